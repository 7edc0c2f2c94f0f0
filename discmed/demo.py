"""`discmed demo`: DISC-MedLLM's whole recipe on the embedded tiny model, in minutes on a CPU.

    load → scrub → rewrite → kgqa → dedup → decontam → mix → sft1 → curate → sft2 → dpo
         → exam → consult → gym → rl → gym_grpo → serve → report (Markdown + PNG charts)

Every stage calls the same Python function its `discmed` command calls, on sample inputs
written for discmed (`discmed/assets/demo`): consultations in MedDialog's raw text format,
CMeKG-style triples, exam questions in MLEC-QA's shape and consultation cases in DISC's
CMB-clin / CMD shapes. The teacher (rewrite, kgqa), the simulated patient and the judge are
the tiny model behind discmed's own OpenAI-compatible server, started in a subprocess on a free
loopback port, so the data pipeline goes through the same `openai` backend a real run points
at vLLM or a hosted API.

Each stage leaves its outputs in its folder under `--out` and a marker
(`stages/<name>.json`: time, counts, details) when it finishes. A second run reuses every
stage that has a marker, up to the first one that has none; from there on everything runs again
(its inputs may have changed). Within a stage the journals of rewrite, kgqa and consult resume
an interrupted run.

The tiny model proves the machinery, not medicine: most of its rewrites fail the fidelity
checks, its exam scores sit at chance and the judge can rarely even produce scores. The
report shows that as it is. To keep the later stages fed, the demo carries the scrubbed
original of each rejected conversation forward (source `MedDialog-raw`); a real run trains
only on accepted rewrites.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

from discmed.backend import GenParams, load_backend
from discmed.chat import atomic_writer, iter_conversations, iter_jsonl, read_json, write_jsonl
from discmed.errors import fail
from discmed.process import served
from discmed.tiny import default_path, ensure_tiny

ASSETS = Path(__file__).resolve().parent / "assets" / "demo"
CHANCE = 0.2  # the demo's exam questions have five options
SERVED_NAME = "discmed-demo"

# name → (title, stages it needs)
STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "load": ("Load MedDialog-format consultations", ()),
    "scrub": ("Scrub personal identifiers", ("load",)),
    "rewrite": ("Rewrite doctor turns with the teacher", ("scrub",)),
    "kgqa": ("CMeKG triples → QA with the teacher", ()),
    "dedup": ("Deduplicate (exact + MinHash)", ("rewrite", "kgqa")),
    "decontam": ("Decontaminate against the eval sets", ("dedup",)),
    "mix": ("Mix and write the data card", ("decontam",)),
    "sft1": ("SFT stage 1 on the mix", ("mix",)),
    "curate": ("Scripted curation of stage-1 replies", ("sft1",)),
    "sft2": ("SFT stage 2 on the curated behaviour set", ("curate",)),
    "dpo": ("DPO on the curated preference pairs", ("sft2", "curate")),
    "exam": ("Exam evaluation (multiple choice)", ("dpo",)),
    "consult": ("Simulated consultations + judge", ("dpo",)),
    "gym": ("The consultation gym: the trained doctor against checked patients", ("dpo",)),
    "rl": ("GRPO against programmatic rewards, before/after on held-out cases", ("dpo",)),
    "gym_grpo": ("GRPO in the consultation gym: warm-up, GRPO steps, eval gym before/after", ("dpo",)),
    "serve": ("Serve the trained model, one chat request", ("dpo",)),
}

PATIENT_QUESTION = "医生您好，我这两天咳嗽，有点低烧，37.8℃，需要吃药吗？"


def loss_logger() -> Any:
    """A TrainerCallback that keeps every logged training loss (for the loss chart)."""
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(round(float(logs["loss"]), 4))

    return LossLog()


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return list(iter_jsonl(path, lambda obj, line: obj))


class Demo:
    """The stages, their folders under `out`, and the teacher server they share."""

    def __init__(self, out: Path, model: str = "tiny", progress: bool = True, console: Any = None):
        self.out, self.model, self.progress, self.console = out, model, progress, console
        self.cache = out / "llm_cache.sqlite"  # the call cache stays in the demo's folder
        self.results: dict[str, dict] = {}
        self._teacher: Any = None  # the running server's context manager
        self._teacher_url: str | None = None
        self.teacher_name = "tiny" if model == "tiny" else "teacher"
        self.teacher_label = f"{model}@discmed-serve"  # stable in journals and caches (the port changes per run)

    # ---------------------------------------------------------------- plumbing

    def dir(self, name: str) -> Path:
        d = self.out / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def teacher(self) -> str:
        """The teacher / patient / judge spec: the base model behind `discmed serve`, started once."""
        if self._teacher_url is None:
            self.say(f"    starting `discmed serve --model {self.model}` (teacher, patient and judge) …")
            self._teacher = served(self.model, self.out / "logs" / "teacher-serve.log", safety=False,
                                   name=self.teacher_name)
            self._teacher_url = self._teacher.__enter__()
            self.say(f"    teacher at {self._teacher_url}")
        return f"openai:{self._teacher_url}@{self.teacher_name}"

    def teacher_backend(self) -> Any:
        """The teacher as an `openai` backend, with a timeout: a broken server fails the stage instead of hanging it."""
        return load_backend(self.teacher(), timeout=600.0, max_retries=1, name=self.teacher_label)

    def close(self) -> None:
        if self._teacher is not None:
            self._teacher.__exit__(None, None, None)
            self._teacher, self._teacher_url = None, None

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)

    def run(self) -> dict[str, dict]:
        """Every stage in order, reusing finished ones up to the first unfinished one."""
        markers = self.out / "stages"
        markers.mkdir(parents=True, exist_ok=True)
        dirty = False  # once a stage runs, every later one runs too
        try:
            for i, (name, (title, needs)) in enumerate(STAGES.items(), start=1):
                marker = markers / f"{name}.json"
                head = f"[bold][{i}/{len(STAGES)}] {name}[/]: {title}"
                missing = [n for n in needs if self.results.get(n, {}).get("status") != "done"]
                if missing:
                    reason = f"needs {', '.join(missing)}, which did not run"
                    self.results[name] = {"status": "not available", "reason": reason, "seconds": 0.0, "counts": {}}
                    self.say(f"{head} — not available: {reason}")
                    continue
                if marker.exists() and not dirty:
                    self.results[name] = {**read_json(marker), "reused": True}
                    self.say(f"{head} — done before ({self.results[name]['seconds']:.1f} s), reused")
                    continue
                if dirty and (self.out / name).exists():
                    shutil.rmtree(self.out / name)  # outputs of an older upstream: start clean
                dirty = True
                marker.unlink(missing_ok=True)
                self.say(head)
                t0 = time.perf_counter()
                try:
                    result = getattr(self, f"stage_{name}")()
                except ImportError as e:
                    # A part of discmed missing from this installation: said in the report, not faked.
                    self.results[name] = {"status": "not available", "reason": str(e), "seconds": 0.0, "counts": {}}
                    self.say(f"    not available: {e}")
                    continue
                result = {"status": "done", "title": title, "seconds": round(time.perf_counter() - t0, 2), **result}
                with atomic_writer(marker) as f:
                    json.dump(result, f, ensure_ascii=False, indent=1, default=str)
                self.results[name] = result
                self.say(f"    done in {result['seconds']:.1f} s: " + ", ".join(f"{k} {v}" for k, v in result["counts"].items()))
        finally:
            self.close()
        return self.results

    # ---------------------------------------------------------------- data

    def stage_load(self) -> dict:
        from discmed.data.sources import load_to_jsonl

        s = load_to_jsonl("meddialog-txt", [ASSETS / "meddialog.txt"], self.dir("load") / "meddialog.jsonl",
                          progress=self.progress)
        return {"counts": {"records": s["records"], "bad_records": s["bad_records"]}, "output": s["output"]}

    def stage_scrub(self) -> dict:
        from discmed.data.scrub import scrub_file

        src = self.out / "load" / "meddialog.jsonl"
        dst = self.dir("scrub") / "scrubbed.jsonl"
        s = scrub_file(src, dst, progress=self.progress)
        before = {c.id: c for c in iter_conversations(src, require_assistant=False)}
        example = None
        for c in iter_conversations(dst, require_assistant=False):
            if "scrub" in c.extra:
                b = before[c.id].messages[0]["content"]
                example = {"id": c.id, "before": b, "after": c.messages[0]["content"]}
                break
        return {"counts": {"records": s["records"], "records_changed": s["records_changed"],
                           "replaced": s["replaced_total"]}, "replaced": s["replaced"], "example": example,
                "output": str(dst), "summary": s}

    def stage_rewrite(self) -> dict:
        from discmed.data.rewrite import rewrite_file

        src = self.out / "scrub" / "scrubbed.jsonl"
        d = self.dir("rewrite")
        s = rewrite_file(src, d / "rewritten.jsonl", self.teacher_backend(), concurrency=16, max_new_tokens=64,
                         temperature=0.7, cache=self.cache, progress=self.progress, teacher_name=self.teacher_label)
        accepted = _jsonl(d / "rewritten.jsonl")
        rejects = _jsonl(d / "rewritten.jsonl.rejects.jsonl")
        # What a real run would stop at is `rewritten.jsonl`. The demo carries the scrubbed
        # original of every conversation the tiny teacher failed on, so later stages have data.
        done = {r["_id"] for r in accepted}
        carried = []
        for c in iter_conversations(src):
            if c.id not in done:
                rec = c.to_record()
                rec["source"] = "MedDialog-raw"
                carried.append(rec)
        # A file of its own, so the data card shows it as what it is: made by the demo, not by a step.
        write_jsonl(carried, d / "carried_raw.jsonl")
        return {"counts": {"input": len(done) + len(carried), "accepted": s["accepted"], "rejected": s["rejected"],
                           "failed": s["failed"], "accepted_after_retry": s["accepted_after_retry"],
                           "teacher_calls": s["teacher_calls"], "carried_raw": len(carried),
                           "records_out": len(accepted) + len(carried)},
                "rejected_by_reason": s["rejected_by_reason"], "example_reject": rejects[0] if rejects else None,
                "example_accept": accepted[0] if accepted else None,
                "tokens": {"prompt": s["prompt_tokens"], "completion": s["completion_tokens"]}, "summary": s}

    def stage_kgqa(self) -> dict:
        from discmed.data.kgqa import kgqa_file

        d = self.dir("kgqa")
        s = kgqa_file(ASSETS / "cmekg.json", d / "kgqa.jsonl", self.teacher_backend(), k=4, max_new_tokens=96,
                      temperature=0.7, cache=self.cache, progress=self.progress, teacher_name=self.teacher_label)
        rejects = _jsonl(d / "kgqa.jsonl.rejects.jsonl")
        return {"counts": {"triples": s["triples"], "entities": s["entities"], "accepted": s["accepted"],
                           "rejected": s["rejected"], "failed": s["failed"], "teacher_calls": s["teacher_calls"]},
                "rejected_by_reason": s["rejected_by_reason"], "example_reject": rejects[0] if rejects else None,
                "summary": s}

    def stage_dedup(self) -> dict:
        from discmed.data.dedup import dedup_file

        d = self.dir("dedup")
        # The sources themselves, as `discmed data dedup A B C --out …` reads them: a pool written
        # here first would cut the card's lineage at dedup.
        sources = [self.out / "rewrite" / "rewritten.jsonl", self.out / "rewrite" / "carried_raw.jsonl",
                   self.out / "kgqa" / "kgqa.jsonl"]
        pool = [r for src in sources for r in _jsonl(src)]
        s = dedup_file(sources, d / "dedup.jsonl", threshold=0.8, report=d / "removed.jsonl", progress=self.progress)
        return {"counts": {"input": len(pool), "kept": s["kept"], "removed_exact": s["removed_exact"],
                           "removed_near": s["removed_near"]}, "removed": _jsonl(d / "removed.jsonl"), "summary": s}

    def stage_decontam(self) -> dict:
        from discmed.data.decontam import EvalIndex, decontam_file

        d = self.dir("decontam")
        index = EvalIndex.from_paths([ASSETS / "exam", ASSETS / "consult"], n=10)
        s = decontam_file(self.out / "dedup" / "dedup.jsonl", d / "clean.jsonl", index, threshold=0.5,
                          report=d / "removed.jsonl", progress=self.progress)
        return {"counts": {"input": s["kept"] + s["removed"], "kept": s["kept"], "removed": s["removed"],
                           "eval_items": s["eval_items"]}, "removed": _jsonl(d / "removed.jsonl"), "summary": s}

    def stage_mix(self) -> dict:
        from discmed.data.card import write_card
        from discmed.data.mix import canonical_source, mix_files

        d = self.dir("mix")
        clean = self.out / "decontam" / "clean.jsonl"
        # Every record of every source: the demo's data is far too small for DISC's proportions.
        sources = {canonical_source(r.get("source", "")) for r in _jsonl(clean)}
        s = mix_files([clean], d / "disc-med-sft.jsonl", seed=42, counts={src: 10**9 for src in sources},
                      progress=self.progress)
        summaries = [self.results[n]["summary"] for n in ("scrub", "rewrite", "kgqa", "dedup", "decontam")]
        card = write_card(d / "disc-med-sft.jsonl", d / "card", summaries=summaries + [s])
        return {"counts": {"records": s["records"], **{f"from_{k}": v for k, v in s["taken"].items()}},
                "card": str(d / "card"), "card_summary": {k: v for k, v in card.items() if isinstance(v, str | int | float)}}

    # ---------------------------------------------------------------- training

    def _recipe(self, **over: Any) -> dict:
        # recipes/tiny.yaml's settings, with a step budget that fits the demo's time.
        # DISC's chat format throughout (ids 195/196): the tiny model and DISC-MedLLM's Baichuan use it.
        base = {"model": self.model.removeprefix("hf:"), "format": "disc", "method": "full", "max_length": 512,
                "packing": True, "epochs": 1, "batch_size": 4, "grad_accum": 1, "learning_rate": 5e-4, "scheduler": "cosine",
                "warmup_steps": 0, "bf16": "auto", "save_steps": 10**6, "save_total_limit": 1,
                "logging_steps": 1, "seed": 42, "resume": "false"}
        return base | over

    def _sft(self, name: str, **over: Any) -> dict:
        from discmed.train.sft import run_sft

        log = loss_logger()
        s = run_sft(self._recipe(output_dir=str(self.out / name / "model"), **over), callbacks=[log])
        return {"counts": {"conversations": s["conversations"], "dropped_no_target": s["dropped_no_target"],
                           "samples": s["samples"], "target_tokens": s["target_tokens"], "steps": s["steps"]},
                "losses": log.losses, "first_loss": s["first_loss"], "final_loss": s["final_loss"],
                "model": s["output_dir"]}

    def stage_sft1(self) -> dict:
        return self._sft("sft1", data=[{"path": str(self.out / "mix" / "disc-med-sft.jsonl")}], epochs=3, max_steps=6)

    def stage_curate(self) -> dict:
        from discmed.data.curate.candidates import generate_candidates, read_prompts
        from discmed.data.curate.export import export
        from discmed.data.curate.store import Store

        d = self.dir("curate")
        store = Store(d / "curation.sqlite")
        prompts = read_prompts(ASSETS / "curation.jsonl")
        ideal = {c.id: c.messages[-1]["content"] for c in iter_conversations(ASSETS / "curation.jsonl")}
        gen = generate_candidates(store, prompts, [self.results["sft1"]["model"]], n=2, temperatures=[0.7, 1.0],
                                  max_new_tokens=64)
        # The scripted annotator: every stage-1 reply is marked unhelpful and the reply a doctor
        # would give (written for discmed, in curation.jsonl) is entered as the edit. What a
        # person does in `discmed data curate serve`, through the same Store calls.
        annotator = "demo-annotator"
        store.issue_token(annotator)
        while (item := store.claim(annotator)) is not None:
            store.submit(annotator, item.id, edited=ideal[item.id],
                         rejected={c.id: "unhelpful" for c in item.candidates})
        s = export(store, d)
        shown = sum(len(it.candidates) for it in store.items())
        example = next(iter(_jsonl(d / "dpo.jsonl")), None)
        return {"counts": {"items": len(prompts), "candidates": gen["generated"], "shown": shown,
                           "decisions": s["decisions"], "sft": s["sft"], "dpo": s["dpo"]}, "example_pair": example}

    def stage_sft2(self) -> dict:
        return self._sft("sft2", model=self.results["sft1"]["model"], learning_rate=2e-4, epochs=2, max_steps=4,
                         data=[{"path": str(self.out / "curate" / "sft.jsonl"), "weight": 2.0}])

    def stage_dpo(self) -> dict:
        from discmed.train.dpo import run_dpo

        log = loss_logger()
        recipe = self._recipe(model=self.results["sft2"]["model"], output_dir=str(self.out / "dpo" / "model"),
                              data=[{"path": str(self.out / "curate" / "dpo.jsonl")}], max_prompt_length=256,
                              beta=0.1, batch_size=2, learning_rate=1e-4, epochs=1, max_steps=4)
        recipe.pop("packing")
        s = run_dpo(recipe, callbacks=[log])
        return {"counts": {"pairs": s["pairs"], "dropped": s["dropped"], "steps": s["steps"]}, "losses": log.losses,
                "first_loss": s["first_loss"], "final_loss": s["final_loss"], "reward_accuracy": s["reward_accuracy"],
                "reward_margin": s["reward_margin"], "model": s["output_dir"]}

    # ---------------------------------------------------------------- evaluation and serving

    def stage_exam(self) -> dict:
        from discmed.eval.loaders import load_questions, load_task
        from discmed.eval.mcq import run_mcq

        task = load_task("mlec-qa")
        questions = load_questions(task, "test", ASSETS / "exam", ["Clinic"])
        runs = {}
        for label, spec in (("base", self.model), ("trained", self.results["dpo"]["model"])):
            backend = load_backend(spec)
            s = run_mcq(backend, task, questions, self.dir("exam") / label,
                        settings={"model": label, "task": "mlec-qa", "mode": "logprob", "shots": 0},
                        mode="logprob", batch_size=8, progress=self.progress)
            sub = s["subsets"]["Clinic"]
            runs[label] = {"n": sub["n"], "correct": sub["correct"], "accuracy": sub["accuracy"], "ci95": sub["ci95"]}
            del backend
        return {"counts": {"questions": len(questions), "correct_base": runs["base"]["correct"],
                           "correct_trained": runs["trained"]["correct"]}, "runs": runs, "chance": CHANCE}

    def stage_consult(self) -> dict:
        from discmed.eval.consult import load_cases, read_dialogues, run_consult
        from discmed.eval.judge import run_judge
        from discmed.eval.score import draw_charts, markdown, read_judgements, summarize

        d = self.dir("consult")
        cases = load_cases(str(ASSETS / "consult" / "cmb-clin.json")) + load_cases(str(ASSETS / "consult" / "cmd.json"))
        teacher = self.teacher_backend()
        doctor = load_backend(self.results["dpo"]["model"])
        c = run_consult(cases, doctor, teacher, d / "dialogues.json", doctor_spec=SERVED_NAME,
                        patient_spec=self.teacher_label, model=SERVED_NAME, turns=2,
                        doctor_params=GenParams(max_new_tokens=48),
                        patient_params=GenParams(max_new_tokens=32, temperature=0.7, top_p=0.9, seed=0),
                        concurrency=4, cache=self.cache, progress=self.progress)
        dialogues = read_dialogues(d / "dialogues.json")
        j = run_judge(dialogues, teacher, d / "judgements.jsonl", judge_spec=self.teacher_label, rubric="zh",
                      params=GenParams(max_new_tokens=80), concurrency=4, cache=self.cache, progress=self.progress)
        summary = summarize(read_judgements([d / "judgements.jsonl"]))
        charts = [str(p) for p in draw_charts(summary, self.out / "charts")] if j["parsed"] else []
        first = dialogues[0] if dialogues else None
        return {"counts": {"cases": len(cases), "dialogues": c["dialogues"], "doctor_turns": c["doctor_turns"],
                           "judged": j["judged"], "parsed": j["parsed"], "unparsed": j["unparsed"]},
                "scores_md": markdown(summary) if j["parsed"] else None, "scores": summary, "judge_charts": charts,
                "example_dialogue": first, "example_judgement": next(iter(_jsonl(d / "judgements.jsonl")), None)}

    def stage_gym(self) -> dict:
        from discmed.gym import SHIPPED
        from discmed.gym.ledger import read_ledgers
        from discmed.gym.run import run_gym

        # The trained model between the scale's two ends (a scripted doctor that asks what matters,
        # one that advises at once), against the rule-based patient: no model call for the patient,
        # every score from the ledgers.
        g = run_gym(read_ledgers(SHIPPED), [self.results["dpo"]["model"], "scripted:ask-all", "scripted:advise-now"],
                    "rule", self.dir("gym"), max_new_tokens=48, cache=self.cache, progress=self.progress,
                    names={self.results["dpo"]["model"]: SERVED_NAME})
        return {"counts": {"ledgers": len(read_ledgers(SHIPPED)), "episodes": g["episodes"], "failed": g["failed"]},
                "report_md": (self.dir("gym") / "report.md").read_text(encoding="utf-8"), "doctors": g["doctors"]}

    def stage_rl(self) -> dict:
        from discmed.train.grpo import run_grpo

        # recipes/tiny-grpo.yaml's settings on the DPO model, a step budget that fits the demo: trained
        # on the CMB-clin-shaped cases, measured before and after on the CMD-shaped ones.
        s = run_grpo({"model": self.results["dpo"]["model"], "format": "disc", "output_dir": str(self.out / "rl" / "model"),
                      "cases": str(ASSETS / "consult" / "cmb-clin.json"), "holdout": 0.0,
                      "eval_cases": str(ASSETS / "consult" / "cmd.json"), "rewards": {"asks": 1.0, "safety": 1.0},
                      "turns": 1, "max_new_tokens": 32, "max_completion_length": 64, "num_generations": 4,
                      "batch_size": 8, "max_steps": 8, "learning_rate": 2e-4, "beta": 0.04, "save_steps": 10**6,
                      "eval_samples": 4, "resume": "false"})
        curve = [{"step": c["step"], "reward": c["reward"]} for c in _jsonl(Path(s["curve"]))]
        before, after = s["before"] or {}, s["after"] or {}
        return {"counts": {"steps": s["steps"], "train_cases": s["train_cases"], "held_out_cases": s["held_out_cases"],
                           "episodes_per_step": 8},
                "curve": curve, "rewards": s["rewards"], "before": before, "after": after,
                "reward_first_quarter": s["reward_first_quarter"], "reward_last_quarter": s["reward_last_quarter"],
                "model": s["output_dir"], "chart": s["chart"]}

    def stage_gym_grpo(self) -> dict:
        from discmed.gym import SHIPPED, TRAINING
        from discmed.gym.ledger import read_ledgers
        from discmed.gym.run import run_gym
        from discmed.gym.warmup import warmup_conversations
        from discmed.train.grpo import run_grpo
        from discmed.train.sft import run_sft

        # The README's path through the gym (recipes/tiny-gym-warm.yaml, then recipes/tiny-gym-grpo.yaml),
        # from the DPO model, with a step budget that fits the demo: it shows every part working end to
        # end, not learning (benchmarks/gym_grpo.py measures that, over seeds, against learning rate 0).
        d = self.dir("gym_grpo")
        train, held_out = read_ledgers(TRAINING), read_ledgers(SHIPPED)
        # 1. The warm-up: the action space (ask, examine, order, conclude) from random-doctor
        #    consultations of the training ledgers; the held-out ones are never read.
        write_jsonl(warmup_conversations(train, per_ledger=6, seed=0), d / "warm.jsonl")
        log = loss_logger()
        warm = run_sft(self._recipe(model=self.results["dpo"]["model"], output_dir=str(d / "warm"),
                                    data=[{"path": str(d / "warm.jsonl")}], learning_rate=1e-3, epochs=4,
                                    max_steps=20, warmup_steps=2), callbacks=[log])
        # 2. GRPO in the gym: the policy plays the doctor against the rule-based patient; the ledger's
        #    rewards, weighted as the recipe weights them; held-out ledgers measured before and after.
        s = run_grpo({"model": warm["output_dir"], "format": "disc", "output_dir": str(d / "model"), "env": "gym",
                      "cases": str(TRAINING), "eval_cases": str(SHIPPED), "holdout": 0.0, "patient": "rule",
                      "max_new_tokens": 24, "max_completion_length": 512, "temperature": 1.0,
                      "rewards": {"info_recall": 3.0, "red_flags_before_advice": 2.0, "diagnosis": 0.5,
                                  "disposition": 0.5, "repeated": -0.2, "multi": -0.1, "over_budget": -0.2},
                      "num_generations": 4, "batch_size": 8, "max_steps": 4, "learning_rate": 6e-4, "beta": 0.04,
                      "save_steps": 10**6, "eval_samples": 2, "seed": 42, "resume": "false"})
        curve = [{"step": c["step"], "reward": c["reward"]} for c in _jsonl(Path(s["curve"]))]
        # 3. `eval gym` (greedy) on the held-out ledgers: the starting model and the GRPO model.
        names = {warm["output_dir"]: "start (warm-up)", s["output_dir"]: "GRPO"}
        g = run_gym(held_out, list(names), "rule", d / "eval", max_new_tokens=24, cache=self.cache,
                    progress=self.progress, names=names)
        return {"counts": {"warmup_steps": warm["steps"], "grpo_steps": s["steps"], "train_ledgers": s["train_cases"],
                           "held_out_ledgers": s["held_out_cases"], "episodes_per_step": 8,
                           "eval_episodes": g["episodes"], "failed": g["failed"]},
                "warmup_losses": log.losses, "curve": curve, "rewards": s["rewards"], "before": s["before"] or {},
                "after": s["after"] or {}, "reward_first_quarter": s["reward_first_quarter"],
                "reward_last_quarter": s["reward_last_quarter"], "model": s["output_dir"],
                "report_md": (d / "eval" / "report.md").read_text(encoding="utf-8"), "doctors": g["doctors"]}

    def stage_serve(self) -> dict:
        import openai

        model = self.results["dpo"]["model"]
        with served(model, self.out / "logs" / "serve-check.log", safety=True, name=SERVED_NAME) as url:
            client = openai.OpenAI(base_url=url, api_key="EMPTY")
            t0 = time.perf_counter()
            reply = client.chat.completions.create(model=SERVED_NAME, max_tokens=64,
                                                   messages=[{"role": "user", "content": PATIENT_QUESTION}])
            seconds = time.perf_counter() - t0
            with urllib.request.urlopen(url.removesuffix("/v1") + "/", timeout=10) as r:
                page = r.read()
        text = reply.choices[0].message.content or ""
        safety = (reply.model_extra or {}).get("safety") or {}  # discmed's extra field: the standing notice
        return {"counts": {"replies": len(reply.choices), "completion_tokens": reply.usage.completion_tokens,
                           "page_bytes": len(page)},
                "question": PATIENT_QUESTION, "reply": text, "reply_seconds": round(seconds, 2),
                "finish_reason": reply.choices[0].finish_reason, "notice": safety.get("notice")}


# ---------------------------------------------------------------- the command


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every stage's outputs and the report")] = Path("demo-out"),
        model: Annotated[str, typer.Option("--model", "-m", help="Base model, teacher, patient and judge (default: the embedded tiny model)")] = "tiny",
        fresh: Annotated[bool, typer.Option(help="Delete --out first instead of reusing finished stages")] = False,
        serve: Annotated[bool, typer.Option("--serve", help="Afterwards serve the trained model: API and web page, until Ctrl+C")] = False,
        port: Annotated[int, typer.Option(help="Port for --serve")] = 8000,
        as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary last")] = False,
    ) -> None:
        """The whole recipe on the embedded tiny model: data → training → evaluation → serving, with a report."""
        from rich.console import Console

        from discmed import SAFETY_NOTICE_ZH
        from discmed.demo_report import write_report

        console = Console(highlight=False, stderr=as_json)
        if fresh and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        if model == "tiny":
            if not (default_path() / "discmed-tiny.json").exists():
                console.print("building the embedded tiny model first (a minute or two) …")
            ensure_tiny(quiet=False)
        # `kill` stops the demo as cleanly as Ctrl+C: the servers it started (each in a session of
        # its own, see discmed.process) are stopped on the way out, not left behind.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        console.print(f"[bold]discmed demo[/]: DISC-MedLLM's recipe on {model!r}, outputs in {out}/")
        console.print(f"[dim]{SAFETY_NOTICE_ZH}[/]")
        t0 = time.perf_counter()
        results = Demo(out, model=model, console=console).run()
        report = write_report(out, results, model=model, total_seconds=time.perf_counter() - t0)
        console.print(f"\nreport: {report}")
        console.print("The tiny model proves the machinery, not medicine: see the report's figures. "
                      "The same commands on a real model: README, 'Per stage, on a real model'.")
        if serve:
            trained = results.get("dpo", {}).get("model")
            if not trained:
                fail("--serve: no trained model (the dpo stage did not run)")
            with served(trained, out / "logs" / "serve.log", safety=True, name=SERVED_NAME, port=port) as url:
                console.print(f"API:      {url}   (model id {SERVED_NAME!r}, OpenAI-compatible)")
                console.print(f"web page: {url.removesuffix('/v1')}/")
                console.print("Ctrl+C stops the server.")
                try:
                    # Short sleeps: a signal that lands on another thread of this process is
                    # only acted on when the main thread next runs Python.
                    while True:
                        time.sleep(0.5)
                except KeyboardInterrupt:
                    pass
        if as_json:
            stages = {n: {"seconds": r.get("seconds", 0.0), **r.get("counts", {}),
                          **({"status": r["status"], "reason": r.get("reason")} if r.get("status") != "done" else {})}
                      for n, r in results.items()}
            print(json.dumps({"report": str(report), "stages": stages}, ensure_ascii=False))


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
