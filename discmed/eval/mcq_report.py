"""Exam accuracy tables in the layout of DISC-MedLLM's README, with bootstrap intervals.

DISC's table puts the exam subsets as columns and the average last, one model per row. A row
here is one (model, mode, shots) setting; results of several runs with the same setting (say
MLEC-QA's five subsets and the 306 exam) merge into one row, as in DISC's table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from discmed.chat import read_json


def bootstrap_ci(correct: list[bool], n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the accuracy of `correct` (fractions, 0..1)."""
    if not correct:
        return (float("nan"), float("nan"))
    x = np.asarray(correct, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(lo), float(hi))


def row_label(summary: dict) -> str:
    shots = summary.get("shots", 0)
    return f"{summary['model']} ({shots}-shot, {summary['mode']})"


def merge_rows(summaries: list[dict]) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """(columns in first-seen order, {row label: {column: subset figures}})."""
    columns: list[str] = []
    rows: dict[str, dict[str, dict]] = {}
    for s in summaries:
        row = rows.setdefault(row_label(s), {})
        for name, fig in s["subsets"].items():
            if name not in columns:
                columns.append(name)
            row[name] = fig
    return columns, rows


def _pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.2f}"


def render_table(summaries: list[dict]) -> str:
    """Markdown: accuracy (%) per subset, then the unweighted average of the row's subsets,
    as DISC averages; below it the 95% bootstrap intervals of the same cells."""
    columns, rows = merge_rows(summaries)
    head = "| Model | " + " | ".join(columns) + " | Average |\n|" + "---|" * (len(columns) + 2) + "\n"
    acc, ci = head, head
    for label, row in rows.items():
        cells = [_pct(row[c]["accuracy"]) if c in row else "–" for c in columns]
        avg = float(np.mean([row[c]["accuracy"] for c in row])) if row else float("nan")
        acc += f"| {label} | " + " | ".join(cells) + f" | {_pct(avg)} |\n"
        cis = [f"{_pct(row[c]['ci95'][0])}–{_pct(row[c]['ci95'][1])}" if c in row else "–" for c in columns]
        ci += f"| {label} | " + " | ".join(cis) + " | |\n"
    return f"{acc}\n95% bootstrap interval (%):\n\n{ci}"


def load_summaries(paths: list[str | Path]) -> list[dict]:
    """Run summaries from results.json files or from the run folders holding them."""
    out = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            p = p / "results.json"
        if not p.exists():
            raise ValueError(f"{p}: no results.json (is the run finished?)")
        data = read_json(p)
        if "subsets" not in data:
            raise ValueError(f"{p}: not a `discmed eval mcq` results file")
        out.append(data)
    return out
