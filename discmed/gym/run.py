"""`discmed eval gym`: doctors against the gym's checked patients, scored from the ledgers.

Each doctor (a model spec, or `scripted:ask-all` / `scripted:advise-now`) plays every ledger
`repeats` times against the patient (`rule`: the rule-based patient, no model call; or a model
spec: the LLM patient with its checker). Episodes go through the job engine: concurrent,
journaled (a rerun resumes), cached by the models' identities. The report gives per doctor the
mean and a 95% bootstrap interval of each measure, n of N episodes, and the checker's rejections.

    summary = run_gym(ledgers, ["tiny", "scripted:ask-all"], "rule", "runs/gym")
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from discmed.backend import GenParams
from discmed.chat import iter_jsonl
from discmed.gym.episode import SCRIPTED, Episode, model_doctor, run_episode
from discmed.gym.ledger import Ledger
from discmed.gym.patient import LLMPatient, RulePatient
from discmed.gym.rewards import score_episode
from discmed.jobs import JobRunner, backend_for, cache_path, job_outcome

MEASURES = ("diagnosis", "disposition", "info_recall", "red_flags_before_advice", "turns", "multi", "repeated",
            "rejections", "reward")


def _doctor_name(spec: str) -> str:
    return spec if spec.startswith("scripted:") else spec.split("@")[-1].rstrip("/").split("/")[-1] or spec


def run_gym(ledgers: list[Ledger], doctors: list[str], patient: str, out: str | Path, *, repeats: int = 1,
            concurrency: int = 8, max_new_tokens: int = 96, temperature: float = 0.0, cache: str | Path = "run",
            progress: bool = True, seed: int = 0, names: dict[str, str] | None = None,
            system: str | None = None) -> dict[str, Any]:
    """Play every (doctor, ledger, repeat) once; write `episodes.jsonl`, `report.md` and
    `scores.json` under `out`; return the summary (with the job outcome of each doctor's run).
    `names` gives a doctor spec the name its rows carry (default: from the spec); `system` is the
    model doctors' system message (a GRPO recipe's doctor_system, to play as it was trained)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    episodes: list[dict[str, Any]] = []
    runs: dict[str, Any] = {}
    for spec in doctors:
        name, eps, outcome = _play(spec, ledgers, patient, out, repeats=repeats, concurrency=concurrency,
                                   max_new_tokens=max_new_tokens, temperature=temperature, cache=cache,
                                   progress=progress, seed=seed, name=(names or {}).get(spec), system=system)
        runs[name] = outcome
        episodes += eps
    with open(out / "episodes.jsonl", "w", encoding="utf-8") as f:
        for e in episodes:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    table = summarize(episodes, expected=len(ledgers) * repeats)
    (out / "scores.json").write_text(json.dumps(table, ensure_ascii=False, indent=2), encoding="utf-8")
    (out / "report.md").write_text(markdown(table, patient), encoding="utf-8")
    return {"out": str(out), "episodes": len(episodes), "doctors": table, "runs": runs,
            "failed": sum(r.get("failed") or 0 for r in runs.values()),
            "stopped": next((r["stopped"] for r in runs.values() if r.get("stopped")), None)}


def _play(spec: str, ledgers: list[Ledger], patient: str, out: Path, *, repeats: int, concurrency: int,
          max_new_tokens: int, temperature: float, cache: Any, progress: bool, seed: int,
          name: str | None = None, system: str | None = None) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """One doctor's episodes through the job engine (journaled under `out`, one file per doctor)."""
    name = name or _doctor_name(spec)
    scripted = SCRIPTED.get(spec.removeprefix("scripted:")) if spec.startswith("scripted:") else None
    if spec.startswith("scripted:") and scripted is None:
        raise ValueError(f"unknown scripted doctor {spec!r} (expected scripted:{' | scripted:'.join(SCRIPTED)})")
    by_id = {led.id: led for led in ledgers}
    journal = out / f"{name.replace(':', '_')}.journal.sqlite"
    with JobRunner(journal, concurrency=concurrency, cache=cache_path(cache, journal), progress=progress) as runner:
        runner.keep_settings({"doctor": spec, "patient": patient, "max_new_tokens": max_new_tokens,
                              "temperature": temperature, "seed": seed, "system": system})
        doc_client = None if scripted else runner.client(backend_for(spec), name="doctor")
        pat_client = None if patient == "rule" else runner.client(backend_for(patient), name="patient")
        params = GenParams(max_new_tokens=max_new_tokens, temperature=temperature)
        p_params = GenParams(max_new_tokens=128, temperature=0.7, top_p=0.9)  # the patient adds its reply schema and seeds

        async def work(key: str, item: tuple[str, int]) -> dict:
            led, k = by_id[item[0]], item[1]
            doctor = scripted(led) if scripted else model_doctor(doc_client, dataclasses.replace(params, seed=seed + k),
                                                                 system)
            pat = RulePatient(seed=seed + k) if pat_client is None else LLMPatient(pat_client, p_params, seed=seed + k)
            ep = await run_episode(led, doctor, pat, doctor_name=name)
            ep.scores = score_episode(ep, led)
            return {**ep.as_dict(), "repeat": k}

        items = [(f"{led.id}#{k}", (led.id, k)) for led in ledgers for k in range(repeats)]
        outcome = runner.map(items, work, desc=f"gym {name}")
        failed_file = out / f"{name.replace(':', '_')}.failed.jsonl"
        runner.write_failures(failed_file, lambda k, item: {"ledger": item[0], "repeat": item[1]})
    return name, [r for r in outcome.results if r is not None], job_outcome(outcome.summary, failed_file)


def _ci(values: list[float], n_boot: int = 2000, seed: int = 0) -> list[float] | None:
    if len(values) < 2:
        return None
    x = np.asarray(values, dtype=float)
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return [round(float(v), 4) for v in np.percentile(means, [2.5, 97.5])]


def summarize(episodes: list[dict[str, Any]], expected: int | None = None) -> dict[str, dict[str, Any]]:
    """Per doctor: n (of `expected`), and each measure's mean with a 95% bootstrap interval
    (over episodes; a measure a case does not have, such as red flags, is averaged over the
    episodes that have it, and its own n is given)."""
    table: dict[str, dict[str, Any]] = {}
    for doctor in dict.fromkeys(e["doctor"] for e in episodes):
        eps = [e for e in episodes if e["doctor"] == doctor]
        row: dict[str, Any] = {"n": len(eps), "N": expected, "patient": eps[0]["patient"] if eps else None}
        for m in MEASURES:
            vals = [float(e["scores"][m]) for e in eps if e["scores"].get(m) is not None]
            row[m] = {"mean": round(float(np.mean(vals)), 4) if vals else None, "ci95": _ci(vals), "n": len(vals)}
        table[doctor] = row
    return table


def markdown(table: dict[str, dict[str, Any]], patient: str) -> str:
    def cell(v: dict[str, Any]) -> str:
        if v["mean"] is None:
            return "—"
        ci = f" ({v['ci95'][0]:.2f}–{v['ci95'][1]:.2f})" if v["ci95"] else ""
        return f"{v['mean']:.2f}{ci}"

    head = ["Doctor", "Episodes", "Diagnosis", "Disposition", "Info recall", "Red flags before advice", "Turns",
            "Patient rejections", "Reward"]
    lines = [f"#### Consultation gym (patient: {patient}; means with 95% bootstrap intervals over episodes)", "",
             "| " + " | ".join(f"**{h}**" for h in head) + " |", "|---" * len(head) + "|"]
    for doctor, row in table.items():
        n = f"{row['n']} of {row['N']}" if row["N"] else str(row["n"])
        lines.append("| " + " | ".join([doctor, n, cell(row["diagnosis"]), cell(row["disposition"]),
                                        cell(row["info_recall"]), cell(row["red_flags_before_advice"]),
                                        cell(row["turns"]), cell(row["rejections"]), cell(row["reward"])]) + " |")
    lines += ["", "Diagnosis: an acceptable name of the hidden diagnosis in the doctor's advice (0.5 for a "
              "differential's). Disposition: the advice's (emergency / same-day / clinic / self-care) is the "
              "case's. Info recall: weighted share of the findings the doctor elicited. Red flags before advice: "
              "share of the case's red flags revealed before its first advice (cases that have any)."]
    return "\n".join(lines) + "\n"


def read_episodes(path: str | Path) -> list[Episode]:
    return [Episode(**{k: v for k, v in obj.items() if k != "repeat"}) for _, obj in
            iter_jsonl(path, lambda obj, line: (line, obj))]
