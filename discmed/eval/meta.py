"""The grader measured against physicians: HealthBench's meta-evaluation (`eval rubric-meta`).

HealthBench published, beside its examples, a meta-evaluation file
(`2025-05-07-06-14-12_oss_meta_eval.jsonl`): completions with one rubric item each and the
verdicts of several physicians. One line:

    {"prompt": [{"role", "content"}, …], "completion": "…", "rubric": "…",
     "category": "cluster:…", "binary_labels": [true, false, …],
     "anonymized_physician_ids": ["…", …], "prompt_id": "…", "completion_id": "…"}

A grader (any model spec, under either protocol) gives its verdict on each line, and is scored
as HealthBench scores it (its published definitions, worked here from the paper and the
meta-eval's docstrings):

- every (grader verdict, physician verdict) pair on a line is one comparison;
- precision of a class (met / not met): of the pairs where the grader said that class, the
  share where the physician said it too; recall: of the pairs where the physician said it, the
  share where the grader did; F1 per class from those two (undefined when either is);
- macro F1 ("balanced"): the mean of the two classes' F1 — HealthBench's headline figure;
- each physician is scored the same way against the other physicians on the lines they
  labelled, so the grader can be placed among them (the physicians' mean macro F1, and how
  many of them the grader's figure reaches);
- the same per category (HealthBench's 34 consensus criteria, `cluster:…`), with the share of
  pairs that agree and the agreement with the physicians' majority where there is one.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from discmed.chat import DataError, iter_jsonl, write_jsonl


def read_meta(path: str | Path) -> list[dict[str, Any]]:
    """HealthBench's meta-evaluation lines, checked; a bad field names file:line:field."""
    def parse(obj: Any, n: int) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise DataError(path, n, "record", "expected a JSON object")
        prompt = obj.get("prompt")
        if not isinstance(prompt, list) or not prompt or not all(
                isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str) for m in prompt):
            raise DataError(path, n, "prompt", "expected a non-empty list of {role, content} messages")
        for key in ("completion", "rubric", "category"):
            if not isinstance(obj.get(key), str):
                raise DataError(path, n, key, "missing or not a string")
        labels = obj.get("binary_labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, bool) for x in labels):
            raise DataError(path, n, "binary_labels", "expected a non-empty list of true / false")
        ids = obj.get("anonymized_physician_ids")
        if not isinstance(ids, list) or len(ids) != len(labels):
            raise DataError(path, n, "anonymized_physician_ids", "expected one id per label")
        return {**obj, "key": str(obj.get("completion_id") or obj.get("prompt_id") or n) + f"/{n}"}

    return list(iter_jsonl(path, parse))


# --- the arithmetic -------------------------------------------------------------------------


def _share(hits: list[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def rater_scores(pairs: list[tuple[bool, bool]]) -> dict[str, Any]:
    """Precision, recall and F1 per class and macro F1 of a rater over (own, other) verdict pairs."""
    out: dict[str, Any] = {"pairs": len(pairs), "agreement": _share([a == b for a, b in pairs])}
    for name, cls in (("pos", True), ("neg", False)):
        precision = _share([b == cls for a, b in pairs if a == cls])
        recall = _share([a == cls for a, b in pairs if b == cls])
        out[f"precision_{name}"], out[f"recall_{name}"], out[f"f1_{name}"] = precision, recall, _f1(precision, recall)
    f1s = (out["f1_pos"], out["f1_neg"])
    out["macro_f1"] = None if None in f1s else (f1s[0] + f1s[1]) / 2
    return out


def meta_scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The grader against physicians, overall and per category (module docstring). Each row
    carries `grader_label` (True / False / None: no verdict, left out and counted)."""
    graded = [r for r in rows if r["grader_label"] is not None]

    def block(items: list[dict[str, Any]]) -> dict[str, Any]:
        pairs = [(r["grader_label"], p) for r in items for p in r["binary_labels"]]
        majority = [(r["grader_label"], 2 * sum(r["binary_labels"]) > len(r["binary_labels"])) for r in items
                    if 2 * sum(r["binary_labels"]) != len(r["binary_labels"])]
        labels = [p for r in items for p in r["binary_labels"]]
        return {**rater_scores(pairs), "rows": len(items), "grader_positive": _share([r["grader_label"] for r in items]),
                "physician_positive": _share(labels), "majority_rows": len(majority),
                "majority_agreement": _share([a == b for a, b in majority])}

    categories = defaultdict(list)
    for r in graded:
        categories[r["category"]].append(r)
    physicians: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for r in graded:  # the lines the grader was scored on, so both are measured on the same ground
        labels, ids = r["binary_labels"], r["anonymized_physician_ids"]
        for i, pid in enumerate(ids):
            physicians[str(pid)] += [(labels[i], other) for j, other in enumerate(labels) if j != i]
    per_physician = {pid: rater_scores(pairs)["macro_f1"] for pid, pairs in sorted(physicians.items())}
    defined = [v for v in per_physician.values() if v is not None]
    overall = block(graded)
    return {"rows": len(rows), "graded": len(graded), "no_verdict": len(rows) - len(graded), "overall": overall,
            "categories": {c: block(items) for c, items in sorted(categories.items())},
            "physicians": {"count": len(per_physician), "with_macro_f1": len(defined),
                           "mean_macro_f1": sum(defined) / len(defined) if defined else None,
                           "grader_reaches": sum(overall["macro_f1"] is not None and overall["macro_f1"] >= v
                                                 for v in defined),
                           "per_physician": per_physician}}


# --- the run ----------------------------------------------------------------------------------


def run_meta(rows: list[dict[str, Any]], grader: Any, out: str | Path, *, grader_spec: str, proto: Any,
             concurrency: int = 8, cache: Any = None, progress: bool = True) -> dict[str, Any]:
    """Grade every line with `proto`; write one JSON line per line graded to `out` (its fields,
    the `grader`, the `protocol`, the graded `conversation`, `grader_label` and the verdict's
    receipt under `grade`); return the run's counts. Resumable (journal)."""
    from discmed.eval.grader import grade_prompt
    from discmed.jobs import JobRunner, job_outcome, run_cache

    out = Path(out)
    params = proto.params()
    who: dict[str, Any] = {"spec": grader_spec, "identity": None}
    runner = JobRunner(out.with_name(out.name + ".journal.sqlite"), concurrency=concurrency,
                       cache=run_cache(out, cache), progress=progress)
    try:
        runner.keep_settings({"grader": grader_spec, "protocol": proto.describe()})
        client = runner.client(grader, name="grader")
        who["identity"] = client.model

        async def work(key: str, row: dict[str, Any]) -> dict:
            conversation = [{"role": m["role"], "content": m["content"]} for m in row["prompt"]] + \
                [{"role": "assistant", "content": row["completion"]}]
            grade = await grade_prompt(client, proto, proto.render_item(conversation, row["rubric"]), params)
            keep = {k: row.get(k) for k in ("prompt_id", "completion_id", "category", "rubric", "binary_labels",
                                           "anonymized_physician_ids")}
            return {"key": key, **keep, "grader": who, "protocol": proto.describe(), "conversation": conversation,
                    "grader_label": grade["criteria_met"], "grade": grade}

        items = [(r["key"], r) for r in rows]
        wanted = {k for k, _ in items}
        stats = runner.run(items, work, desc="meta-eval")
        results = [r for k, r in runner.results() if k in wanted]
        failed_file = out.with_name(out.stem + ".failed.jsonl")
        runner.write_failures(failed_file, lambda k, row: {"key": k, "prompt_id": row.get("prompt_id")})
    finally:
        runner.close()
    write_jsonl(results, out)
    return {"out": str(out), "grader": grader_spec, "grader_identity": who["identity"], "protocol": proto.describe(),
            "lines": len(rows), "graded": len(results), "no_verdict": sum(r["grader_label"] is None for r in results),
            "calls": stats["calls"], "cache_hits": stats["cache_hits"], "wall_s": stats["wall_s"],
            **job_outcome(stats, failed_file)}


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def markdown(scores: dict[str, Any], grader: str) -> str:
    """The overall figures, the grader among the physicians, and one row per category."""
    o, p = scores["overall"], scores["physicians"]
    lines = [f"#### Grader {grader} against physicians (HealthBench meta-evaluation)", "",
             f"{scores['graded']} of {scores['rows']} lines graded ({scores['no_verdict']} without a verdict, left out); "
             f"{o['pairs']} grader-physician pairs.", "",
             "| **Macro F1** | **F1 met** | **F1 not met** | **Pairwise agreement** | **Agreement with the majority** "
             "| **Grader says met** | **Physicians say met** |", "|---|---|---|---|---|---|---|",
             f"| {_f(o['macro_f1'])} | {_f(o['f1_pos'])} | {_f(o['f1_neg'])} | {_f(o['agreement'])} "
             f"| {_f(o['majority_agreement'])} (n={o['majority_rows']}) | {_f(o['grader_positive'])} "
             f"| {_f(o['physician_positive'])} |", "",
             f"Physicians scored the same way against each other: mean macro F1 {_f(p['mean_macro_f1'])} over "
             f"{p['with_macro_f1']} of {p['count']} physicians (the others gave one class only); the grader's macro F1 "
             f"reaches {p['grader_reaches']} of them.", "",
             "#### By category", "",
             "| **Category** | **Lines** | **Macro F1** | **Pairwise agreement** | **Majority agreement** "
             "| **Grader says met** | **Physicians say met** |", "|---|---|---|---|---|---|---|"]
    for c, b in scores["categories"].items():
        lines.append(f"| {c} | {b['rows']} | {_f(b['macro_f1'])} | {_f(b['agreement'])} | {_f(b['majority_agreement'])} "
                     f"| {_f(b['grader_positive'])} | {_f(b['physician_positive'])} |")
    return "\n".join(lines) + "\n"
