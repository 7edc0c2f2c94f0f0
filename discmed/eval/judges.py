"""Judge swap: the same dialogues graded by several graders, and what changes (`eval judges`).

"Which grader?" is the question HealthBench users ask most: a hosted model is costly, a local
one cheap, and a score is only comparable under the grader that made it. Given rubric runs
(their grades.jsonl keep each graded conversation and criterion), every other grader grades the
same conversations on the same criteria under the same protocol; then, for every pair of
graders:

- per-criterion agreement: the share of (dialogue, criterion) verdicts both gave that are the
  same, and Cohen's kappa on them (agreement beyond what each grader's rate of "met" gives by
  chance), overall and per criterion tag;
- the models' ranking: each grader's score per model (HealthBench's arithmetic), on the
  dialogues every grader gave a verdict on every criterion of — the same ground for all — and
  Kendall's tau-b between two graders' scores over the models (1: the same order; -1: reversed).
"""

from __future__ import annotations

import math
import re
from itertools import combinations
from pathlib import Path
from typing import Any

from discmed.eval.rubric import Criterion, Example, dialogue_key, read_grades, summarize


def read_run(run: str | Path) -> list[dict[str, Any]]:
    """A rubric run's grade lines (a run folder or its grades.jsonl), checked to be regradable."""
    run = Path(run)
    path = run / "grades.jsonl" if run.is_dir() else run
    lines = read_grades(path)
    for n, line in enumerate(lines, 1):
        if not isinstance(line.get("conversation"), list) or not isinstance(line.get("protocol"), dict):
            raise ValueError(f"{path}:{n}: this grade line keeps no graded conversation or protocol (written before "
                             "receipts); grade the dialogues again with eval rubric to compare graders on them")
    return lines


def dialogues_and_examples(lines: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Example]]:
    """The graded conversations as dialogues `run_grading` takes, and each id's rubric."""
    dialogues, examples = [], {}
    for line in lines:
        conv = line["conversation"]
        dialogues.append({"id": line["id"], "model": line["model"], "source": line.get("source"),
                          "repeat": line.get("repeat"), "prompt": conv[:-1],
                          "conversation": [{"role": "doctor", "content": conv[-1]["content"]}]})
        examples.setdefault(str(line["id"]), Example(str(line["id"]), conv[:-1], [
            Criterion(g["criterion"], g["points"], g.get("tags", [])) for g in line["grades"]],
            line.get("example_tags", [])))
    return dialogues, list(examples.values())


def slug(spec: str) -> str:
    return re.sub(r"[^\w.-]+", "_", spec).strip("_")[-60:] or "grader"


def _verdicts(lines: list[dict[str, Any]]) -> dict[tuple, tuple[bool | None, list[str]]]:
    """{(dialogue key, criterion index): (verdict, the criterion's tags)}."""
    out = {}
    for line in lines:
        key = dialogue_key({**line, "source": line.get("source")})
        for i, g in enumerate(line["grades"]):
            out[(key, i)] = (g["criteria_met"], g.get("tags", []))
    return out


def kappa(a: list[bool], b: list[bool]) -> float | None:
    """Cohen's kappa (scikit-learn's) of two graders' verdicts; 1 when both give one and the
    same verdict throughout; None when it is undefined (one grader constant, the other not)."""
    import warnings

    from sklearn.metrics import cohen_kappa_score

    if not a:
        return None
    if a == b:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        k = float(cohen_kappa_score(a, b, labels=[False, True]))
    return None if math.isnan(k) else k


def kendall(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b (scipy's) of two graders' model scores; None for fewer than two models or a
    constant side."""
    from scipy.stats import kendalltau

    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(kendalltau(x, y).statistic)


def compare(graded: dict[str, list[dict[str, Any]]], seed: int = 0) -> dict[str, Any]:
    """Agreement and rankings between graders: {label: grade lines} → the module docstring's figures."""
    verdicts = {g: _verdicts(lines) for g, lines in graded.items()}
    complete = None  # dialogues every grader gave a verdict on every criterion of
    for lines in graded.values():
        done = {dialogue_key({**x, "source": x.get("source")}) for x in lines
                if all(g["criteria_met"] is not None for g in x["grades"])}
        complete = done if complete is None else complete & done
    complete = complete or set()
    scores = {g: summarize([x for x in lines if dialogue_key({**x, "source": x.get("source")}) in complete], seed)
              for g, lines in graded.items()}
    models = sorted({m for s in scores.values() for m in s})
    table = {g: {m: s[m]["score"] if m in s else None for m in models} for g, s in scores.items()}
    pairs = []
    for a, b in combinations(graded, 2):
        shared = [k for k in verdicts[a] if k in verdicts[b] and verdicts[a][k][0] is not None
                  and verdicts[b][k][0] is not None]
        va, vb = [verdicts[a][k][0] for k in shared], [verdicts[b][k][0] for k in shared]
        by_tag: dict[str, Any] = {}
        for tag in sorted({t for k in shared for t in verdicts[a][k][1]}):
            ks = [k for k in shared if tag in verdicts[a][k][1]]
            ta, tb = [verdicts[a][k][0] for k in ks], [verdicts[b][k][0] for k in ks]
            by_tag[tag] = {"n": len(ks), "agreement": sum(x == y for x, y in zip(ta, tb, strict=True)) / len(ks),
                           "kappa": kappa(ta, tb)}
        ranked = [m for m in models if table[a].get(m) is not None and table[b].get(m) is not None]
        pairs.append({"a": a, "b": b, "verdicts": len(shared),
                      "agreement": sum(x == y for x, y in zip(va, vb, strict=True)) / len(shared) if shared else None,
                      "kappa": kappa(va, vb), "by_tag": by_tag, "models": len(ranked),
                      "kendall_tau": kendall([table[a][m] for m in ranked], [table[b][m] for m in ranked])})
    # Competition ranking: models a grader scores alike share a rank (1, 1, 3).
    ranks = {g: {m: 1 + sum(v is not None and v > row[m] for v in row.values()) for m in models if row[m] is not None}
             for g, row in table.items()}
    return {"graders": list(graded), "dialogues_compared": len(complete), "models": models, "scores": table,
            "ranks": ranks, "pairs": pairs,
            "met_rate": {g: (sum(v[0] for v in vs.values() if v[0] is not None)
                             / max(1, sum(v[0] is not None for v in vs.values()))) for g, vs in verdicts.items()},
            "no_verdict": {g: sum(v[0] is None for v in vs.values()) for g, vs in verdicts.items()}}


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def markdown(result: dict[str, Any]) -> str:
    graders = result["graders"]
    lines = ["#### Models by grader (HealthBench arithmetic; rank in brackets)", "",
             f"On the {result['dialogues_compared']} dialogues every grader gave a verdict on every criterion of.", "",
             "| **Model** | " + " | ".join(f"**{g}**" for g in graders) + " |", "|---" * (len(graders) + 1) + "|"]
    for m in result["models"]:
        cells = [f"{_f(result['scores'][g][m])} ({result['ranks'][g].get(m, '—')})" for g in graders]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "| **Grader** | **Says met** | **No verdict** |", "|---|---|---|"]
    lines += [f"| {g} | {_f(result['met_rate'][g])} | {result['no_verdict'][g]} |" for g in graders]
    lines += ["", "#### Graders against each other", "",
              "| **Grader A** | **Grader B** | **Verdicts both gave** | **Agreement** | **Cohen's kappa** "
              "| **Kendall tau (models)** |", "|---|---|---|---|---|---|"]
    for p in result["pairs"]:
        lines.append(f"| {p['a']} | {p['b']} | {p['verdicts']} | {_f(p['agreement'])} | {_f(p['kappa'])} "
                     f"| {_f(p['kendall_tau'])} (n={p['models']}) |")
    lines += ["", "— : undefined (kappa: one grader gives one verdict throughout and the other does not; tau: fewer "
              "than two models, or a grader that scores them all alike)."]
    for p in result["pairs"]:
        if p["by_tag"]:
            lines += ["", f"#### Per criterion tag: {p['a']} vs {p['b']}", "",
                      "| **Tag** | **n** | **Agreement** | **Cohen's kappa** |", "|---|---|---|---|"]
            lines += [f"| {t} | {v['n']} | {_f(v['agreement'])} | {_f(v['kappa'])} |" for t, v in p["by_tag"].items()]
    return "\n".join(lines) + "\n"
