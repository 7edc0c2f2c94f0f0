"""The demo's report: one Markdown file and its PNG charts, from the stage results of `discmed demo`.

It knows nothing about running stages: it reads the dicts `discmed.demo.Demo.run` returns (the
same ones kept in `stages/<name>.json`) and writes `report.md` and `charts/*.png` under the demo's
folder, each atomically. The report says first and plainly what the tiny model's figures mean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from discmed import SAFETY_NOTICE_ZH
from discmed.chat import atomic_writer
from discmed.tiny import default_path

CHARTS = ("stage_times.png", "data_funnel.png", "training_loss.png", "exam_accuracy.png")


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")


def draw_charts(results: dict[str, dict], out_dir: Path) -> list[Path]:
    """Stage times, the data funnel, training losses and exam accuracy against chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    done = {n: r for n, r in results.items() if r.get("status") == "done"}

    names = list(results)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    secs = [results[n].get("seconds", 0.0) for n in names]
    colors = ["tab:blue" if n in done else "lightgray" for n in names]
    ax.barh(names[::-1], secs[::-1], color=colors[::-1])
    for y, (n, s) in enumerate(zip(names[::-1], secs[::-1], strict=True)):
        ax.text(s, y, f" {s:.1f} s" + (" (reused)" if results[n].get("reused") else ""), va="center", fontsize=8)
    ax.set_xlim(0, max(secs + [1.0]) * 1.3)  # room for the labels
    ax.set_xlabel("seconds")
    ax.set_title("discmed demo: time per stage")
    _save(fig, out_dir / "stage_times.png")
    plt.close(fig)
    written.append(out_dir / "stage_times.png")

    def count(stage: str, key: str) -> int:
        return int(done.get(stage, {}).get("counts", {}).get(key, 0))

    steps = [("loaded", count("load", "records"), 0), ("scrubbed", count("scrub", "records"), 0),
             ("rewrites\naccepted", count("rewrite", "accepted"), count("rewrite", "carried_raw")),
             ("KG QA\naccepted", count("kgqa", "accepted"), 0), ("after\ndedup", count("dedup", "kept"), 0),
             ("after\ndecontam", count("decontam", "kept"), 0), ("mixed", count("mix", "records"), 0),
             ("stage-1\nsamples", count("sft1", "samples"), 0)]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    labels = [s[0] for s in steps]
    ax.bar(labels, [s[1] for s in steps], color="tab:green", label="records")
    ax.bar(labels, [s[2] for s in steps], bottom=[s[1] for s in steps], color="tab:orange",
           label="scrubbed originals carried (rewrite rejected)")
    for i, (_, n, carried) in enumerate(steps):
        ax.text(i, n + carried, f"{n}" + (f" + {carried}" if carried else ""), ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max([s[1] + s[2] for s in steps] + [1]) * 1.35)  # room for the legend
    ax.set_ylabel("records")
    ax.set_title("Data, stage by stage")
    ax.tick_params(axis="x", labelsize=8)
    ax.legend(fontsize=7)
    _save(fig, out_dir / "data_funnel.png")
    plt.close(fig)
    written.append(out_dir / "data_funnel.png")

    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, name in zip(axes, ("sft1", "sft2", "dpo"), strict=True):
        losses = done.get(name, {}).get("losses") or []
        ax.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3)
        ax.set_title({"sft1": "SFT stage 1", "sft2": "SFT stage 2", "dpo": "DPO"}[name] + ("" if losses else " (not run)"))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss")
    fig.tight_layout()
    _save(fig, out_dir / "training_loss.png")
    plt.close(fig)
    written.append(out_dir / "training_loss.png")

    fig, ax = plt.subplots(figsize=(5, 3.6))
    exam = done.get("exam", {})
    runs = exam.get("runs", {})
    labels = list(runs)
    acc = [runs[k]["accuracy"] for k in labels]
    err = [[a - runs[k]["ci95"][0] for k, a in zip(labels, acc, strict=True)],
           [runs[k]["ci95"][1] - a for k, a in zip(labels, acc, strict=True)]]
    ax.bar(labels, acc, yerr=err if labels else None, capsize=6, color="tab:purple")
    ax.axhline(exam.get("chance", 0.2), color="red", linestyle="--", label="chance (1 in 5)")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% bootstrap CI)")
    ax.set_title("Exam questions: tiny model before and after training" if labels else "Exam: not run")
    ax.legend(fontsize=8)
    _save(fig, out_dir / "exam_accuracy.png")
    plt.close(fig)
    written.append(out_dir / "exam_accuracy.png")

    for stage, held_out, title, name in (
            ("rl", "held-out cases", "GRPO on consultations: reward per step", "rl_reward.png"),
            ("gym_grpo", "held-out ledgers", "GRPO in the consultation gym: reward per step", "gym_grpo_reward.png")):
        if (done.get(stage) or {}).get("curve"):
            written.append(_reward_chart(plt, done[stage], held_out, title, out_dir / name))
    return written


def _reward_chart(plt, stage: dict, held_out: str, title: str, path: Path) -> Path:
    """A GRPO stage's reward per step, with its held-out measurement before and after as lines."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot([c["step"] for c in stage["curve"]], [c["reward"] for c in stage["curve"]], marker="o", color="tab:green")
    for label, style in (("before", ":"), ("after", "--")):
        value = (stage.get(label) or {}).get("reward")
        if value is not None:
            ax.axhline(value, linestyle=style, color="gray", label=f"{held_out}, {label}: {value:.2f}")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean reward of the step's episodes")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    _save(fig, path)
    plt.close(fig)
    return path


def _cut(text: str | None, n: int = 160) -> str:
    text = (text or "").replace("\n", " ").replace("|", "｜")
    return text if len(text) <= n else text[:n] + "…"


def _figures(r: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in r.get("counts", {}).items())


def verdict(results: dict[str, dict]) -> list[str]:
    """The plain statement at the top: what the tiny model's figures show, with the figures."""
    lines = []
    rw = results.get("rewrite", {}).get("counts", {})
    by_reason = results.get("rewrite", {}).get("rejected_by_reason", {})
    reasons = ", ".join(f"{k} ({v})" for k, v in by_reason.items())
    if rw:
        total = rw.get("accepted", 0) + rw.get("rejected", 0)
        lines.append(f"- **Rewrites:** {rw.get('accepted', 0)} of {total} conversations passed the fidelity checks "
                     f"({rw.get('rejected', 0)} rejected, {rw.get('failed', 0)} failed); what the checks caught: "
                     f"{reasons or 'nothing'}. The demo carries the scrubbed originals of rejected "
                     "conversations forward (source `MedDialog-raw`) so that training has data; a real run trains only on "
                     "accepted rewrites.")
    kg = results.get("kgqa", {}).get("counts", {})
    if kg:
        lines.append(f"- **KG QA:** {kg.get('accepted', 0)} of {kg.get('entities', 0)} entities gave a grounded QA pair.")
    runs = results.get("exam", {}).get("runs", {})
    if runs:
        chance = results["exam"].get("chance", 0.2)
        parts = []
        for label, r in runs.items():
            lo, hi = r["ci95"]
            where = "includes" if lo <= chance <= hi else "does not include"
            parts.append(f"{label} {r['accuracy']:.0%} ({r['correct']}/{r['n']}, 95% CI {lo:.0%}–{hi:.0%}, which {where} chance)")
        lines.append(f"- **Exam:** accuracy {'; '.join(parts)}; chance is {chance:.0%}.")
    cs = results.get("consult", {}).get("counts", {})
    if cs:
        lines.append(f"- **Judge:** the tiny judge gave readable scores for {cs.get('parsed', 0)} of {cs.get('judged', 0)} "
                     "dialogues; unreadable ones are counted, never averaged in.")
    rl = results.get("rl", {})
    if rl.get("status") == "done" and rl.get("before") and rl.get("after"):
        lines.append(f"- **GRPO:** on the held-out CMD-shaped cases the `asks` reward went {rl['before'].get('asks')} → "
                     f"{rl['after'].get('asks')} after {rl['counts'].get('steps')} steps (four sampled episodes per case: "
                     "a small sample; the slow test compares against learning-rate-0 runs).")
    gg = results.get("gym_grpo", {})
    if gg.get("status") == "done" and gg.get("before") and gg.get("after"):
        b, a = gg["before"], gg["after"]
        lines.append(f"- **GRPO in the gym:** after {gg['counts'].get('grpo_steps')} steps, held-out information recall "
                     f"{b.get('info_recall')} → {a.get('info_recall')}, red flags found before advice "
                     f"{b.get('red_flags_before_advice')} → {a.get('red_flags_before_advice')} (two sampled episodes "
                     "per ledger). A demo of the path, not of learning: `benchmarks/gym_grpo.py` measures that.")
    return lines


def _tiny_info() -> dict:
    """The tiny model's build summary (`discmed-tiny.json`), or {} when it cannot be read."""
    try:
        return json.loads((default_path() / "discmed-tiny.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_report(out: Path, results: dict[str, dict], *, model: str = "tiny", total_seconds: float = 0.0) -> Path:
    """Write `report.md` and `charts/*.png` under `out`; returns the report's path."""
    charts = draw_charts(results, out / "charts")
    judge_charts = [Path(p) for p in results.get("consult", {}).get("judge_charts", [])]
    L: list[str] = ["# discmed demo report", ""]
    L += [f"DISC-MedLLM's recipe, end to end, on `{model}`: data construction → SFT stage 1 → curation → "
          "SFT stage 2 → DPO → exam and consultation evaluation → serving.", ""]
    if model == "tiny":
        size = ""
        info = _tiny_info()
        if info.get("parameters"):
            size = f" ({info['parameters'] / 1e6:.1f}M parameters, pretrained for a minute or two on discmed's own corpus)"
        L += [f"**The embedded tiny model{size} proves the machinery, not medicine.** "
              "Every stage below ran on it for real; its medical output is close to noise, and the figures show it:", ""]
    L += verdict(results) + ["", f"> {SAFETY_NOTICE_ZH}", ""]

    L += ["## Stages", "", "| # | stage | status | seconds | figures |", "|---:|---|---|---:|---|"]
    for i, (name, r) in enumerate(results.items(), start=1):
        status = r.get("status", "?") + (" (reused)" if r.get("reused") else "")
        L.append(f"| {i} | {name} | {status} | {r.get('seconds', 0.0):.1f} | {_figures(r)} |")
    L += ["", f"Wall time of this run: {total_seconds:.1f} s (reused stages cost nothing; their recorded time is shown)."]
    for name, r in results.items():
        if r.get("status") != "done":
            L.append(f"\nstage {name}: not available: {r.get('reason', 'unknown')}")
    L += ["", "## Charts", ""] + [f"![{p.stem}](charts/{p.name})" for p in charts + judge_charts] + [""]

    def section(name: str, title: str) -> dict | None:
        r = results.get(name, {})
        L.extend([f"## {title}", ""])
        if r.get("status") != "done":
            L.extend([f"stage {name}: not available: {r.get('reason', 'not run')}", ""])
            return None
        L.extend([f"{_figures(r)} — {r.get('seconds', 0.0):.1f} s.", ""])
        return r

    if r := section("load", "Load"):
        L += ["Consultations written for discmed in MedDialog-CN's raw text format (`discmed/assets/demo/meddialog.txt`).", ""]
    if r := section("scrub", "Scrub"):
        L += [f"Replaced by type: `{json.dumps(r.get('replaced', {}), ensure_ascii=False)}`.", ""]
        if r.get("example"):
            L += [f"- before: {_cut(r['example']['before'])}", f"- after: {_cut(r['example']['after'])}", ""]
    if r := section("rewrite", "Rewrite (teacher: the tiny model behind `discmed serve`)"):
        L += [f"Rejected, by reason: `{json.dumps(r.get('rejected_by_reason', {}), ensure_ascii=False)}`.", ""]
        if ex := r.get("example_reject"):
            L += [f"A rejected rewrite ({ex.get('_id')}, turn {ex.get('turn')}):", "",
                  f"- original doctor turn: {_cut(ex.get('original'))}", f"- tiny teacher's rewrite: {_cut(ex.get('rewrite'))}",
                  f"- why rejected: {'; '.join(ex.get('reasons', []))}", ""]
    if r := section("kgqa", "Knowledge-graph QA"):
        L += [f"Rejected, by reason: `{json.dumps(r.get('rejected_by_reason', {}), ensure_ascii=False)}`.", ""]
        if ex := r.get("example_reject"):
            L += [f"- entity {ex.get('subject')}: {_cut(ex.get('output'))}", f"- why rejected: {'; '.join(ex.get('reasons', []))}", ""]
    if r := section("dedup", "Deduplication"):
        L += [f"- {x['_id']} removed: {x['reason']} duplicate of {x['duplicate_of']} (similarity {x['similarity']})"
              for x in r.get("removed", [])] + [""]
    if r := section("decontam", "Decontamination"):
        L += [f"- {x['_id']} removed: contains {Path(x['eval_file']).name} {x['eval_field']} "
              f"(coverage {x['coverage']:.0%}): {_cut(x['eval_text'], 60)}" for x in r.get("removed", [])] + [""]
    if r := section("mix", "Mix"):
        L += ["The SFT file: `mix/disc-med-sft.jsonl`; its data card: `mix/card/DATA_CARD.md`.", ""]
    L += ["## Training", "", "| stage | conversations / pairs | steps | first loss | final loss |", "|---|---:|---:|---:|---:|"]
    for name in ("sft1", "sft2", "dpo"):
        r = results.get(name, {})
        if r.get("status") == "done":
            c = r["counts"]
            L.append(f"| {name} | {c.get('conversations', c.get('pairs'))} | {c.get('steps')} | "
                     f"{r.get('first_loss')} | {r.get('final_loss')} |")
        else:
            L.append(f"| {name} | not available: {r.get('reason', 'not run')} | | | |")
    if results.get("dpo", {}).get("status") == "done":
        d = results["dpo"]
        L += ["", f"DPO's last logged reward accuracy {d.get('reward_accuracy')}, margin {d.get('reward_margin')}. "
              f"The trained model: `{d.get('model')}`."]
    L.append("")
    if r := section("curate", "Curation (scripted annotator)"):
        L += ["Candidates from the stage-1 model went into the curation database; a script played the annotator through "
              "the same `Store` calls as the web tool: it marked every tiny-model reply unhelpful and entered the reply "
              "written for discmed as the edit. The export gave the stage-2 set and the DPO pairs.", ""]
        if ex := r.get("example_pair"):
            L += [f"- prompt: {_cut(ex['prompt'][-1]['content'])}", f"- chosen: {_cut(ex['chosen'])}",
                  f"- rejected (stage-1 model): {_cut(ex['rejected'])}", ""]
    if r := section("exam", "Exam evaluation"):
        L += ["20 five-option questions written for discmed in MLEC-QA's shape, scored by option log-probability, zero-shot.", "",
              "| model | correct | accuracy | 95% CI |", "|---|---:|---:|---|"]
        L += [f"| {k} | {v['correct']}/{v['n']} | {v['accuracy']:.0%} | {v['ci95'][0]:.0%}–{v['ci95'][1]:.0%} |"
              for k, v in r.get("runs", {}).items()]
        L += ["", f"Chance: {r.get('chance', 0.2):.0%}.", ""]
    if r := section("consult", "Consultations and the judge"):
        L += ["Patient and judge: the tiny model behind `discmed serve`; doctor: the trained model. Cases in DISC's "
              "CMB-clin and CMD shapes, written for discmed; two doctor turns each.", ""]
        if d := r.get("example_dialogue"):
            L += [f"Dialogue {d['id']} ({d['source']}):", ""]
            L += [f"- {t['role']}: {_cut(t['content'], 120)}" for t in d["conversation"]] + [""]
        if j := r.get("example_judgement"):
            L += [f"The judge's raw reply on {j['id']}: {_cut(j['scores'], 200)}", ""]
        L += [r["scores_md"], ""] if r.get("scores_md") else ["No judgement could be parsed into scores, so no score table or chart.", ""]
    if r := section("gym", "The consultation gym"):
        L += ["The trained model as the doctor on the eight shipped case ledgers, against the rule-based patient "
              "(it answers only what is asked, from the ledger; exam findings and test results come from the "
              "measurement agent), beside two scripted doctors that mark the scale's ends. Every score is computed "
              "from the ledger, none by a model judge.", "", r.get("report_md", ""), ""]
    if r := section("rl", "Reinforcement learning (GRPO on consultations)"):
        L += ["GRPO (TRL's GRPOTrainer, `discmed train grpo`) on the DPO model: each step samples four one-turn "
              "episodes per CMB-clin-shaped case and rewards the first reply for asking the patient something "
              "(`asks`) and, for the urgent case, for escalating to 120 / 急诊 (`safety`) — programmatic rewards a "
              "model this small can move. The patient's turns are context, never trained on. Before and after: the "
              "same rewards on the CMD-shaped cases, which training never saw (four sampled episodes each).", "",
              "| | mean reward | " + " | ".join(r.get("rewards", {})) + " |", "|---|---:|" + "---:|" * len(r.get("rewards", {}))]
        for label in ("before", "after"):
            x = r.get(label) or {}
            cells = ["— (no case it applies to)" if x.get(k) is None else str(x.get(k)) for k in r.get("rewards", {})]
            L.append(f"| {label} | {x.get('reward')} | " + " | ".join(cells) + " |")
        L += ["", f"Training reward, mean of the first and last quarter of steps: {r.get('reward_first_quarter')} → "
              f"{r.get('reward_last_quarter')} (per step: {', '.join(str(round(c['reward'], 2)) for c in r.get('curve', []))}). "
              "Eight steps of a tiny model measure the machinery; `tests/test_grpo.py -m slow` measures the rise against "
              "runs at learning rate 0.", ""]
        if ex := (r.get("after") or {}).get("samples"):
            L += [f"- {t['role']}: {_cut(t['content'], 120)}" for t in ex[0]["conversation"]] + [""]
    if r := section("gym_grpo", "GRPO in the consultation gym"):
        c = r["counts"]
        L += [f"The path `train grpo` takes in the gym, end to end, on the DPO model: a warm-up ({c.get('warmup_steps')} "
              "SFT steps on consultations of the training ledgers in which a doctor asks, examines, orders and "
              "concludes at random: the actions, not which pay), then "
              f"{c.get('grpo_steps')} GRPO steps of {c.get('episodes_per_step')} episodes on the "
              f"{c.get('train_ledgers')} training ledgers: the policy plays the doctor against the rule-based patient "
              "(no model call), each episode to its conclusion or the ledger's turn budget, rewarded from the ledger "
              f"with the recipe's weights (`{json.dumps(r.get('rewards', {}))}`). The {c.get('held_out_ledgers')} "
              "shipped ledgers are held out: never trained on, measured before and after.", "",
              "**This shows the path working, not learning.** A few steps of a 3M-parameter model move its "
              "figures by chance as much as by training; `benchmarks/gym_grpo.py` (24 steps, three seeds, against "
              "a learning-rate-0 baseline) is where the gym's GRPO is shown to teach, and `benchmarks/RESULTS.md` has "
              "its tables.", ""]
        names = [k for k in r.get("rewards", {}) if k in (r.get("before") or {})]
        L += ["Held-out ledgers, two sampled episodes each, before and after (the recipe's weighted reward and each "
              "reward's mean):", "", "| | episodes | weighted reward | " + " | ".join(names) + " |",
              "|---|---:|---:|" + "---:|" * len(names)]
        for label in ("before", "after"):
            x = r.get(label) or {}
            cells = ["—" if x.get(k) is None else f"{x[k]:.3f}" for k in names]
            L.append(f"| {label} | {x.get('episodes')} | {x.get('reward')} | " + " | ".join(cells) + " |")
        L += ["", f"Training reward, mean of the first and last quarter of steps: {r.get('reward_first_quarter')} → "
              f"{r.get('reward_last_quarter')} (per step: {', '.join(str(round(x['reward'], 2)) for x in r.get('curve', []))}). "
              "Then `discmed eval gym`, greedy, on the held-out ledgers: the starting model (after the warm-up) and the "
              "GRPO model.", "", r.get("report_md", ""), ""]
    if r := section("serve", "Serving"):
        L += [f"`discmed serve` on the trained model (safety layer on) answered a chat request through the official "
              f"`openai` client in {r.get('reply_seconds')} s (finish reason {r.get('finish_reason')}) and served the "
              f"chat page ({r['counts'].get('page_bytes')} bytes).", "", f"- question: {r.get('question')}",
              f"- reply: {_cut(r.get('reply'), 400)}", f"- the response's `safety` notice: {r.get('notice')}", ""]
    L += ["## On a real model", "",
          "Every stage is one `discmed` command; `runs/disc.sh` is the same pipeline at DISC's scale, and the README "
          "shows each stage with real models (`--model hf:Flmc/DISC-MedLLM`, any hub id, local folder or "
          "OpenAI-compatible URL).", ""]
    path = out / "report.md"
    with atomic_writer(path) as f:
        f.write("\n".join(L))
    return path
