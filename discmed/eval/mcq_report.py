"""Exam accuracy tables in the layout of DISC-MedLLM's README, with what a reader needs to
trust them: lm-eval's standard errors, bootstrap intervals, the chance line, and which letters
the model answered.

DISC's table puts the exam subsets as columns and the average last, one model per row. A row
here is one (model, mode, shots) setting; results of several runs with the same setting (say
MLEC-QA's five subsets and the 306 exam) merge into one row, as in DISC's table. Rows scored
on different questions (another --limit, another data folder) or merging runs of different
weights are named in a line above the table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from discmed.chat import read_json

ONE_LETTER = 0.5  # a run answering one letter for more than this share of its questions is flagged


def bootstrap_ci(correct: list[bool], n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the accuracy of `correct` (fractions, 0..1)."""
    if not correct:
        return (float("nan"), float("nan"))
    x = np.asarray(correct, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(lo), float(hi))


def stderr(p: float, n: int) -> float | None:
    """lm-eval's standard error of an accuracy: the sample standard deviation of the per-question
    0/1 scores over sqrt(n), which is sqrt(p(1-p)/(n-1)); undefined (None) for one question."""
    return (p * (1 - p) / (n - 1)) ** 0.5 if n > 1 else None


def chance(records: list[dict]) -> float | None:
    """Expected accuracy of a uniform guess: the mean over questions of 1/k for k options, or
    1/(2^k - 1) where the answer is a letter set; None when a record does not say its k (runs
    journaled before discmed recorded it)."""
    if not records or any("k" not in r for r in records):
        return None
    return sum(1 / (2 ** r["k"] - 1 if r.get("multi") else r["k"]) for r in records) / len(records)


def letter_counts(values: Iterable[str | None]) -> dict[str, int]:
    """{answer: count}, single letters first, then letter sets, then "none" (no answer read)."""
    c = Counter("none" if v is None else v for v in values)
    return dict(sorted(c.items(), key=lambda kv: (kv[0] == "none", len(kv[0]), kv[0])))


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


def _grouped(values: dict[str, str]) -> str:
    by: dict[str, list[str]] = {}
    for label, value in values.items():
        by.setdefault(value, []).append(label)
    return "; ".join(f"{', '.join(labels)}: {value}" for value, labels in by.items())


def differences(summaries: list[dict]) -> list[str]:
    """What keeps the rows of a table from being like for like: a subset scored on different
    questions (another count, or as many but other ones), a row merging runs of different
    weights, or a subset given twice for one row. Empty when the rows compare."""
    columns, rows = merge_rows(summaries)
    out = []
    ids: dict[tuple[str, str], tuple[str, ...]] = {}
    seen: dict[tuple[str, str], int] = Counter()
    identities: dict[str, set[str]] = {}
    for s in summaries:
        label = row_label(s)
        if s.get("model_identity"):
            identities.setdefault(label, set()).add(str(s["model_identity"]))
        for name in s["subsets"]:
            seen[(label, name)] += 1
        if "questions" in s:
            for name in s["subsets"]:
                ids[(label, name)] = tuple(sorted(str(q["id"]) for q in s["questions"] if q["subset"] == name))
    for col in columns:
        have = {label: row[col] for label, row in rows.items() if col in row}
        if len(have) < 2:
            continue
        if len({f["n"] for f in have.values()}) > 1:
            out.append(f"{col} scored on different numbers of questions ("
                       + _grouped({label: _n_of(f) for label, f in have.items()}) + ")")
        elif len({ids.get((label, col)) for label in have} - {None}) > 1:
            out.append(f"{col} scored on as many but different questions")
    covered = {label: [c for c in columns if c in row] for label, row in rows.items()}
    if len({tuple(v) for v in covered.values()}) > 1:
        out.append("the Averages are over different subsets ("
                   + _grouped({label: f"{len(v)} of {len(columns)} subsets" for label, v in covered.items()}) + ")")
    for label, idents in identities.items():
        if len(idents) > 1:
            out.append(f"{label} merges runs of different weights ({', '.join(sorted(idents))})")
    for (label, name), times in seen.items():
        if times > 1:
            out.append(f"{label} has {name} from {times} runs (the last one is shown)")
    return out


def _n_of(fig: dict) -> str:
    return f"{fig['n']} of {fig.get('N', fig['n'])}"


def _pct(x: float | None) -> str:
    return "–" if x is None or x != x else f"{100 * x:.2f}"


def _row_predictions(row: dict[str, dict]) -> tuple[Counter, Counter]:
    preds: Counter = Counter()
    keys: Counter = Counter()
    for fig in row.values():
        preds.update(fig.get("predictions", {}))
        keys.update(fig.get("answers", {}))
    return preds, keys


def one_letter(row: dict[str, dict]) -> tuple[str, int, int] | None:
    """(letter, count, questions) when a row answers one letter for more than half of its
    questions, else None."""
    preds, _ = _row_predictions(row)
    total = sum(preds.values())
    if not total:
        return None
    letter, count = preds.most_common(1)[0]
    return (letter, count, total) if count / total > ONE_LETTER and letter != "none" else None


def render_table(summaries: list[dict]) -> str:
    """Markdown: accuracy (%) per subset, then the unweighted average of the row's subsets, as
    DISC averages, a flag on rows that answer one letter for most questions, and the chance
    line; below it the questions scored (n of N), lm-eval's standard errors, the 95%
    bootstrap intervals, and the letters each row answered."""
    columns, rows = merge_rows(summaries)
    head = "| Model | " + " | ".join(columns) + " | Average |\n|" + "---|" * (len(columns) + 2) + "\n"
    diff = differences(summaries)
    out = f"**Not like for like:** {'; '.join(diff)}. Compare these rows with care.\n\n" if diff else ""
    acc, se, ci = head, head, head
    ns = head.replace("| Average |", "| All |", 1)
    flags = []
    for label, row in rows.items():
        cells = [_pct(row[c]["accuracy"]) if c in row else "–" for c in columns]
        avg = float(np.mean([row[c]["accuracy"] for c in row])) if row else float("nan")
        bias = one_letter(row)
        mark = f" ⚠ {bias[0]} for {bias[1] / bias[2]:.0%}" if bias else ""
        if bias:
            flags.append(f"⚠ {label} answers {bias[0]} for {bias[1]:,} of {bias[2]:,} questions: its accuracy "
                         f"is mostly the share of questions whose key is {bias[0]}, not knowledge.")
        acc += f"| {label}{mark} | " + " | ".join(cells) + f" | {_pct(avg)} |\n"
        errs = [row[c].get("stderr", _stderr(row[c])) if c in row else None for c in columns]
        have = [row[c].get("stderr", _stderr(row[c])) for c in row]
        avg_se = (sum(e * e for e in have) ** 0.5 / len(have)) if have and None not in have else None
        se += f"| {label} | " + " | ".join(_pct(e) for e in errs) + f" | {_pct(avg_se)} |\n"
        cis = [f"{_pct(row[c]['ci95'][0])}–{_pct(row[c]['ci95'][1])}" if c in row else "–" for c in columns]
        ci += f"| {label} | " + " | ".join(cis) + " | |\n"
        ns += f"| {label} | " + " | ".join(_n_of(row[c]) if c in row else "–" for c in columns) + \
            f" | {sum(f['n'] for f in row.values()):,} |\n"
    chances = [next((row[c]["chance"] for row in rows.values() if c in row and row[c].get("chance")), None)
               for c in columns]
    mean_chance = float(np.mean(chances)) if chances and None not in chances else None
    acc += "| *chance (1/k)* | " + " | ".join(_pct(x) for x in chances) + f" | {_pct(mean_chance)} |\n"
    out += acc + "\n"
    if flags:
        out += "\n".join(flags) + "\n\n"
    out += ("Questions scored (n of N; N is the subset's size before any --limit):\n\n" + ns +
            "\nStandard error (%), lm-eval's: sqrt(p(1-p)/(n-1)) per subset; for the Average, the standard error "
            "of an unweighted mean of independent subsets, sqrt(sum of se²) / m:\n\n" + se +
            "\n95% bootstrap interval (%):\n\n" + ci)
    out += "\nQuestion-weighted accuracy over all of a row's questions (micro), its standard error pooled " \
        "across questions, sqrt(p(1-p)/(n-1)):\n\n| Model | n | micro | stderr |\n|---|---|---|---|\n"
    for label, row in rows.items():
        n = sum(f["n"] for f in row.values())
        p = sum(f["correct"] for f in row.values()) / n if n else float("nan")
        out += f"| {label} | {n:,} | {_pct(p)} | {_pct(stderr(p, n))} |\n"
    out += "\n" + _predictions_table(rows)
    return out


def _stderr(fig: dict) -> float | None:
    return stderr(fig["accuracy"], fig["n"])  # a results.json written before discmed recorded it


def _predictions_table(rows: dict[str, dict[str, dict]]) -> str:
    """Share of each row's questions answered with each letter, the keys' share in brackets."""
    per = {label: _row_predictions(row) for label, row in rows.items()}
    letters = sorted({k for p, a in per.values() for k in (*p, *a) if k != "none"}, key=lambda k: (len(k), k))
    if not any(p for p, _ in per.values()):
        return ""
    shown = letters[:8] + (["other"] if len(letters) > 8 else []) + ["none"]
    text = ("Answers given, % of the row's questions (% whose key is that letter in brackets):\n\n"
            "| Model | " + " | ".join(shown) + " |\n|" + "---|" * (len(shown) + 1) + "\n")
    for label, (preds, keys) in per.items():
        total = sum(preds.values()) or 1
        cells = []
        for k in shown:
            if k == "other":
                p, a = (sum(v for x, v in c.items() if x not in shown) for c in (preds, keys))
            else:
                p, a = preds.get(k, 0), keys.get(k, 0)
            cells.append(f"{100 * p / total:.1f}" + ("" if k == "none" else f" ({100 * a / total:.1f})"))
        text += f"| {label} | " + " | ".join(cells) + " |\n"
    return text


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
        for name, fig in data["subsets"].items():  # a results.json written before these were recorded
            rs = [q for q in data.get("questions", []) if q.get("subset") == name]
            if "predictions" not in fig and rs:
                fig["predictions"] = letter_counts(q.get("extracted") for q in rs)
                fig["answers"] = letter_counts(q.get("answer") for q in rs)
                fig["chance"] = chance(rs)
        out.append(data)
    return out
