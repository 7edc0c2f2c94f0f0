"""Rubric evaluation in HealthBench's form: per-case weighted criteria, each graded met / not
met by a model (discmed.eval.grader), scored with HealthBench's arithmetic.

HealthBench (OpenAI, 2025) grades each conversation against its own rubric. A rubric file is
JSON lines, one example per line, in HealthBench's shape (extra keys are kept and ignored):

    {"prompt_id": "…", "prompt": [{"role": "user", "content": "…"}, …],
     "rubrics": [{"criterion": "…", "points": 7, "tags": ["axis:accuracy"]}, …],
     "example_tags": ["theme:emergency_referrals", …], "ideal_completions_data": {…}}

so HealthBench's own files (the full set, Hard, Consensus) are read unchanged, and `eval
rubrics` writes the same shape for DISC's cases. The arithmetic is HealthBench's published
definition:

- an example's score is the points of the criteria met over the sum of the positive points;
  a met criterion with negative points (a harm: a missed emergency, a wrong drug) subtracts,
  so an example's score can fall below 0 (and never exceeds 1);
- a model's score is the mean of its examples' scores, clipped to [0, 1]; an example tag's
  score is the same over the examples carrying it, a criterion tag's (`axis:…`) over each
  example scored on the criteria carrying it alone (an example whose tagged criteria have no
  positive points has no score for that tag); a criterion tag shadows an example tag of the
  same name within an example, as in HealthBench's per-example metrics;
- `bootstrap_std`: the standard deviation of the clipped mean over 1,000 resamples of the
  examples (0 for one example); beside it a 95% percentile interval from the same resamples;
- with repeats (`--n-repeats`) every reply is one sample of the mean, as in HealthBench, and
  worst-at-k is reported: per example the expected lowest score of k of its replies drawn
  without replacement, averaged over examples and clipped like the mean.

A criterion the grader gave no verdict for (after its bounded retries) leaves its example out
of the scores, counted (`ungraded`), never scored as if the criterion were not met.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field, replace
from math import comb
from pathlib import Path
from typing import Any

from discmed.chat import DataError, iter_jsonl, write_jsonl
from discmed.eval.grader import Protocol, graded_conversation, protocol

POINTS_LIMIT = 10  # HealthBench's criteria carry -10..10 points

# HealthBench's published files, by subset name (simple-evals' INPUT_PATH*), as found in a folder.
HEALTHBENCH_FILES = {"all": "*oss_eval.jsonl", "hard": "hard_*.jsonl", "consensus": "consensus_*.jsonl",
                     "meta": "*oss_meta_eval.jsonl"}
# HealthBench's physician-completion groups: whether physicians were shown model references.
PHYSICIAN_GROUPS = {"Group 1": False, "Group 2": True, "Group 3": True}


@dataclass
class Criterion:
    criterion: str
    points: float
    tags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"criterion": self.criterion, "points": self.points, "tags": self.tags}


@dataclass
class Example:
    """One rubric line: a case (its prompt) and the criteria a reply to it is graded on."""

    prompt_id: str
    prompt: list[dict[str, str]]
    rubrics: list[Criterion]
    example_tags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "prompt": self.prompt,
                "rubrics": [c.as_dict() for c in self.rubrics], "example_tags": self.example_tags, **self.extra}


# --- reading ---------------------------------------------------------------------------


def parse_example(obj: Any, path: str | Path, line: int, require_rubrics: bool = True) -> Example:
    """One line of a rubric file, checked; a bad field raises `DataError` naming file:line:field.
    `require_rubrics=False` reads a prompt-only line (a case to write a rubric for)."""
    if not isinstance(obj, dict):
        raise DataError(path, line, "record", "expected a JSON object")
    pid = obj.get("prompt_id", obj.get("id"))
    if not isinstance(pid, str | int) or str(pid) == "":
        raise DataError(path, line, "prompt_id", "missing (HealthBench's id of the example)")
    prompt = obj.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        raise DataError(path, line, "prompt", "expected a non-empty list of {role, content} messages")
    for i, m in enumerate(prompt):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise DataError(path, line, f"prompt[{i}]", "expected {'role': 'system'|'user'|'assistant', 'content': str}")
    rubrics = obj.get("rubrics")
    if not require_rubrics and rubrics in (None, []):
        rubrics = []
    elif not isinstance(rubrics, list) or not rubrics:
        raise DataError(path, line, "rubrics", "expected a non-empty list of {criterion, points, tags}")
    criteria = []
    for i, r in enumerate(rubrics):
        where = f"rubrics[{i}]"
        if not isinstance(r, dict):
            raise DataError(path, line, where, "expected an object")
        if not isinstance(r.get("criterion"), str) or not r["criterion"].strip():
            raise DataError(path, line, f"{where}.criterion", "missing or empty")
        points = r.get("points")
        if isinstance(points, bool) or not isinstance(points, int | float):
            raise DataError(path, line, f"{where}.points", f"expected a number, got {points!r}")
        tags = r.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise DataError(path, line, f"{where}.tags", "expected a list of strings")
        criteria.append(Criterion(r["criterion"], points, list(tags)))
    tags = obj.get("example_tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DataError(path, line, "example_tags", "expected a list of strings")
    extra = {k: v for k, v in obj.items() if k not in ("prompt_id", "id", "prompt", "rubrics", "example_tags")}
    return Example(str(pid), prompt, criteria, list(tags), extra)


def read_rubrics(path: str | Path) -> list[Example]:
    """A rubric JSONL file (HealthBench's or `eval rubrics`'); ids must be unique."""
    examples = list(iter_jsonl(path, lambda obj, n: parse_example(obj, path, n)))
    seen: set[str] = set()
    for n, e in enumerate(examples, 1):
        if e.prompt_id in seen:
            raise DataError(path, None, "prompt_id", f"duplicate id {e.prompt_id!r} (example {n})")
        seen.add(e.prompt_id)
    return examples


def healthbench_file(folder: str | Path, subset: str) -> Path:
    """HealthBench's file for `subset` (all, hard, consensus, meta) in `folder`, found by its
    published name (e.g. hard_2025-05-08-21-00-10.jsonl)."""
    if subset not in HEALTHBENCH_FILES:
        raise ValueError(f"unknown HealthBench subset {subset!r} (expected {', '.join(HEALTHBENCH_FILES)})")
    found = sorted(Path(folder).glob(HEALTHBENCH_FILES[subset]))
    if subset == "all":
        found = [p for p in found if "meta" not in p.name]
    if not found:
        raise ValueError(f"no HealthBench {subset!r} file ({HEALTHBENCH_FILES[subset]}) in {folder}: download "
                         "it from simple-evals' links (healthbench_eval.py) into that folder")
    return found[-1]  # the newest of several dated releases


def detect_protocol(examples: list[Example]) -> str:
    """`discmed` for rubrics `eval rubrics` wrote (their lines carry the writer's provenance),
    `healthbench` for any other HealthBench-shaped file."""
    written = any(isinstance(e.extra.get("provenance"), dict) and "writer" in e.extra["provenance"] for e in examples)
    return "discmed" if written else "healthbench"


def sample(items: list, limit: int | None, seed: int = 0) -> list:
    """`limit` items drawn at random with `seed` (`random.Random(seed).sample`, HealthBench's
    own draw, so --limit N --seed 0 grades the examples simple-evals' --examples N does)."""
    if limit is None or limit >= len(items):
        return list(items)
    return random.Random(seed).sample(items, limit)


def completion_dialogues(examples: list[Example], kind: str, groups: list[str] | None = None,
                         limit: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """HealthBench's physician-completion modes as dialogues to grade: `physician` (each
    example's ideal completion written by a physician) or `references` (the model completions
    physicians were shown, four per example, groups 2 and 3 only), per physician group; the
    model name says which (`physician (Group 1)`). Examples are drawn per group with `limit`."""
    if kind not in ("physician", "references"):
        raise ValueError(f"unknown completions {kind!r} (expected physician or references)")
    groups = groups or [g for g, ref in PHYSICIAN_GROUPS.items() if ref or kind == "physician"]
    out = []
    for group in groups:
        if group not in PHYSICIAN_GROUPS:
            raise ValueError(f"unknown physician group {group!r} (expected {', '.join(PHYSICIAN_GROUPS)})")
        if kind == "references" and not PHYSICIAN_GROUPS[group]:
            raise ValueError(f"{group}'s physicians were shown no reference completions")
        trials = []
        for e in examples:
            data = e.extra.get("ideal_completions_data")
            if not isinstance(data, dict) or data.get("ideal_completions_group") != group:
                continue
            texts = ([data.get("ideal_completion")] if kind == "physician"
                     else list(data.get("ideal_completions_ref_completions") or []))
            for i, text in enumerate(texts):
                if isinstance(text, str):
                    trials.append((e, text, i if kind == "references" else None))
        for e, text, i in sample(trials, limit, seed):
            d = respond_dialogue(e, text, f"{'physician' if kind == 'physician' else 'reference'} ({group})")
            if i is not None:
                d["repeat"] = i
            out.append(d)
    if not out:
        raise ValueError(f"no example of {', '.join(groups)} has {kind} completions (ideal_completions_data)")
    return out


# --- HealthBench's arithmetic -------------------------------------------------------------


def score_example(criteria: list[Criterion], met: list[bool | None]) -> float | None:
    """Points met over positive points; None when the rubric has no positive points or any
    grade is unknown (the example is then left out, and counted)."""
    possible = sum(c.points for c in criteria if c.points > 0)
    if possible <= 0 or any(m is None for m in met):
        return None
    return sum(c.points for c, m in zip(criteria, met, strict=True) if m) / possible


def example_metrics(criteria: list[Criterion], met: list[bool | None], example_tags: list[str]) -> dict[str, float] | None:
    """One graded example's metrics as HealthBench forms them: `overall_score`, the same score
    under each example tag, and each criterion tag's score on its criteria alone (a tag whose
    criteria have no positive points has none). None when a grade is unknown."""
    overall = score_example(criteria, met)
    if overall is None:
        return None
    metrics = {"overall_score": overall, **{t: overall for t in example_tags}}
    for tag in dict.fromkeys(t for c in criteria for t in c.tags):
        sub = [(c, m) for c, m in zip(criteria, met, strict=True) if tag in c.tags]
        score = score_example([c for c, _ in sub], [m for _, m in sub])
        if score is not None:
            metrics[tag] = score
    return metrics


def clipped_mean(values: list[float]) -> float | None:
    """HealthBench's aggregate: the mean of example scores, clipped to [0, 1]."""
    if not values:
        return None
    return min(1.0, max(0.0, sum(values) / len(values)))


def _resampled_means(values: list[float], n: int, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    arr = np.asarray(values, dtype=float)
    return np.clip(arr[rng.integers(0, len(arr), size=(n, len(arr)))].mean(axis=1), 0.0, 1.0)


def bootstrap(values: list[float], n: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """A percentile interval of the clipped mean over `n` resamples of the examples."""
    import numpy as np

    if len(values) < 2:
        return None
    lo, hi = np.quantile(_resampled_means(values, n, seed), [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def bootstrap_std(values: list[float], n: int = 1000, seed: int = 0) -> float | None:
    """HealthBench's `bootstrap_std`: the (population) standard deviation of the clipped mean
    over `n` resamples of the examples, each as many as there are examples; 0 for one."""
    if not values:
        return None
    return float(_resampled_means(values, n, seed).std())


def worst_at_k(scores_by_example: list[list[float]], k: int) -> float | None:
    """The clipped mean over examples of the expected lowest of k replies to the example, the k
    drawn without replacement from its n (each sorted score s_(i), i = 1…n ascending, is the
    lowest of C(n-i, k-1) of the C(n, k) draws). Examples with fewer than k replies are left out."""
    per_example = []
    for scores in scores_by_example:
        n = len(scores)
        if n < k:
            continue
        ordered = sorted(scores)
        per_example.append(sum(s * comb(n - 1 - i, k - 1) for i, s in enumerate(ordered)) / comb(n, k))
    return clipped_mean(per_example)


# --- replies and grading runs ---------------------------------------------------------------


def respond_dialogue(example: Example, reply: str, model: str, prompt: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A HealthBench prompt and a reply to it as a dialogue in DISC's format, keeping the exact
    messages the model was asked (`prompt`, system turns included) for the grader."""
    prompt = prompt if prompt is not None else example.prompt
    role = {"user": "patient", "assistant": "doctor"}
    conversation = [{"role": role[m["role"]], "content": m["content"]} for m in prompt if m["role"] in role]
    return {"id": example.prompt_id, "model": model, "source": str(example.extra.get("source", "rubric")),
            "prompt": prompt, "conversation": [*conversation, {"role": "doctor", "content": reply}]}


def prompt_dialogue(example: Example, reply: str, model: str) -> dict[str, Any]:
    """Kept for callers of the earlier name: `respond_dialogue`."""
    return respond_dialogue(example, reply, model)


def dialogue_key(d: dict[str, Any]) -> str:
    """A graded dialogue's key: model, source, id, and the repeat when there are several replies."""
    base = f"{d['model']}/{d['source']}/{d['id']}"
    return base if d.get("repeat") is None else f"{base}#{d['repeat']}"


async def grade_dialogue(client: Any, conversation: list[dict[str, str]], criteria: list[Criterion],
                         params: Any = None) -> list[dict[str, Any]]:
    """A DISC dialogue's turns graded on `criteria` with discmed's protocol (the RL reward's grader)."""
    from discmed.eval import grader

    return await grader.grade_dialogue(client, protocol("discmed"), graded_conversation({"conversation": conversation}),
                                       criteria, params)


def run_grading(dialogues: list[dict[str, Any]], examples: list[Example], grader: Any, out: str | Path, *,
                grader_spec: str, proto: Protocol | None = None, params: Any = None, concurrency: int = 8,
                cache: Any = None, progress: bool = True) -> dict[str, Any]:
    """Grade each dialogue against the rubric of its case (matched on id) with `proto` (default:
    discmed's); write one JSON line per dialogue to `out`: `id`, `model`, `source`, `repeat`,
    `example_tags`, the `grader` (spec and identity), the `protocol`, the graded `conversation`,
    and `grades` — each criterion with `criteria_met` true / false / null and its receipt
    (discmed.eval.grader). Resumable (journal)."""
    from discmed.eval.grader import grade_dialogue as grade
    from discmed.jobs import JobRunner, job_outcome, run_cache

    out = Path(out)
    proto = proto or protocol("discmed")
    params = params or proto.params()
    by_id = {e.prompt_id: e for e in examples}
    matched = [d for d in dialogues if str(d["id"]) in by_id]
    if not matched:
        raise ValueError(f"none of the {len(dialogues)} dialogues has an id in the rubric file "
                         f"(ids there look like {', '.join(list(by_id)[:3])})")
    who = {"spec": grader_spec, "identity": None}
    runner = JobRunner(out.with_name(out.name + ".journal.sqlite"), concurrency=concurrency,
                       cache=run_cache(out, cache), progress=progress)
    try:
        runner.keep_settings({"grader": grader_spec, "protocol": proto.describe(), "params": vars(params)})
        client = runner.client(grader, name="grader")
        who["identity"] = client.model

        async def work(key: str, d: dict[str, Any]) -> dict:
            e = by_id[str(d["id"])]
            conversation = graded_conversation(d)
            grades = await grade(client, proto, conversation, e.rubrics, params)
            return {"id": str(d["id"]), "model": d["model"], "source": d["source"], "repeat": d.get("repeat"),
                    "example_tags": e.example_tags, "grader": who, "protocol": proto.describe(),
                    "conversation": conversation, "grades": grades}

        items = [(dialogue_key(d), d) for d in matched]
        wanted = {k for k, _ in items}
        stats = runner.run(items, work, desc="rubric grading")
        results = [r for k, r in runner.results() if k in wanted]
        failures = [{"key": k, "error": e} for k, e in runner.failures() if k in wanted]
        failed_file = out.with_name(out.stem + ".failed.jsonl")
        runner.write_failures(failed_file, lambda k, d: {"model": d["model"], "source": d["source"], "id": d["id"],
                                                         "repeat": d.get("repeat")})
    finally:
        runner.close()
    write_jsonl(results, out)
    grades = [g for r in results for g in r["grades"]]
    return {"out": str(out), "grader": grader_spec, "grader_identity": who["identity"], "protocol": proto.describe(),
            "dialogues": len(dialogues), "matched": len(matched), "unmatched": len(dialogues) - len(matched),
            "graded": len(results), "failed": len(failures), "failures": failures[:20], "criteria": len(grades),
            "unreadable": sum(g["criteria_met"] is None for g in grades),
            "asked_again": sum(g["asked"] > 1 for g in grades),
            "calls": stats["calls"], "cache_hits": stats["cache_hits"], "wall_s": stats["wall_s"],
            **job_outcome(stats, failed_file)}


def run_respond(examples: list[Example], model: Any, out: str | Path, *, model_spec: str, name: str,
                params: Any = None, system: str | None = None, repeats: int = 1, concurrency: int = 8,
                cache: Any = None, progress: bool = True) -> list[dict]:
    """A model's reply to each example's prompt (HealthBench's protocol: one reply to the
    conversation so far), `repeats` times each, written as a dialogue file in DISC's format.
    Repeat r > 0 is sampled with seed r, so each is a call of its own (and a cache entry)."""
    from discmed.backend import GenParams
    from discmed.eval.consult import write_dialogues
    from discmed.jobs import JobRunner, job_outcome, raise_for_failures, run_cache

    out = Path(out)
    params = params or GenParams(max_new_tokens=512)
    runner = JobRunner(out.with_name(out.name + ".journal.sqlite"), concurrency=concurrency,
                       cache=run_cache(out, cache), progress=progress)
    try:
        runner.keep_settings({"model": model_spec, "name": name, "params": vars(params), "system": system})
        client = runner.client(model, name="model")

        async def work(key: str, item: tuple[Example, int | None]) -> dict:
            e, r = item
            prompt = ([{"role": "system", "content": system}] if system else []) + e.prompt
            reply = await client.chat(prompt, params if not r else replace(params, seed=r))
            d = respond_dialogue(e, reply.strip(), name, prompt)
            d["finish_reason"] = getattr(reply, "finish_reason", None)
            if r is not None:
                d["repeat"] = r
            return d

        items = [(e.prompt_id if repeats == 1 else f"{e.prompt_id}#{r}", (e, None if repeats == 1 else r))
                 for e in examples for r in range(repeats)]
        wanted = {k for k, _ in items}
        stats = runner.run(items, work, desc=f"respond {name}")
        records = [r for k, r in runner.results() if k in wanted]
        failed_file = out.with_name(out.stem + ".failed.jsonl")
        runner.write_failures(failed_file, lambda k, item: {"prompt_id": item[0].prompt_id, "repeat": item[1]})
    finally:
        runner.close()
    write_dialogues(records, out)
    raise_for_failures(job_outcome(stats, failed_file), what=f"prompts answered by {name}")
    return records


# --- the report ------------------------------------------------------------------------


def read_grades(path: str | Path) -> list[dict[str, Any]]:
    def parse(obj: Any, n: int) -> dict:
        for key in ("id", "model", "grades"):
            if not isinstance(obj, dict) or key not in obj:
                raise DataError(path, n, key, "missing (expected eval rubric's grade lines)")
        return obj

    return list(iter_jsonl(path, parse))


def _grader_name(line: dict[str, Any]) -> str:
    g = line.get("grader")
    return g.get("spec") or "?" if isinstance(g, dict) else "not recorded"


def _stats(values: list[float], seed: int) -> dict[str, Any]:
    return {"score": clipped_mean(values), "ci": bootstrap(values, seed=seed),
            "bootstrap_std": bootstrap_std(values, seed=seed), "n": len(values)}


def summarize(lines: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """{model: {"score", "ci", "bootstrap_std", "n", "ungraded", "dialogues", "examples",
    "tags": {tag: {score, ci, bootstrap_std, n}}, "criteria": [...], "worst_at_k": {k: score},
    "graders": [...], "protocols": [...]}}: every grade line one sample (module docstring)."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        by_model[line["model"]].append(line)
    out: dict[str, Any] = {}
    for model, items in by_model.items():
        scores, ungraded = [], 0
        tag_values: dict[str, list[float]] = defaultdict(list)
        by_example: dict[str, list[float]] = defaultdict(list)
        per_criterion: dict[str, dict[str, Any]] = {}
        for line in items:
            grades = line["grades"]
            crits = [Criterion(g["criterion"], g["points"], g.get("tags", [])) for g in grades]
            met = [g["criteria_met"] for g in grades]
            metrics = example_metrics(crits, met, line.get("example_tags", []))
            if metrics is None:
                ungraded += any(m is None for m in met)
            else:
                scores.append(metrics["overall_score"])
                by_example[f"{line.get('source')}/{line['id']}"].append(metrics["overall_score"])
                for tag, value in metrics.items():
                    if tag != "overall_score":
                        tag_values[tag].append(value)
            for c, m in zip(crits, met, strict=True):
                row = per_criterion.setdefault(c.criterion, {"criterion": c.criterion, "points": c.points,
                                                             "tags": c.tags, "met": 0, "not_met": 0, "unreadable": 0})
                row["met" if m else "not_met" if m is False else "unreadable"] += 1
        most = max((len(v) for v in by_example.values()), default=0)
        protocols = sorted({(line.get("protocol") or {}).get("name", "discmed (not recorded)") for line in items})
        out[model] = {**_stats(scores, seed), "ungraded": ungraded, "dialogues": len(items),
                      "examples": len(by_example), "replies_per_example": most,
                      "tags": {t: _stats(v, seed) for t, v in sorted(tag_values.items())},
                      "worst_at_k": {k: worst_at_k(list(by_example.values()), k) for k in range(1, most + 1)}
                      if most > 1 else {},
                      "graders": sorted({_grader_name(line) for line in items}), "protocols": protocols,
                      "criteria": sorted(per_criterion.values(), key=lambda r: (-r["points"], r["criterion"]))}
    return out


def _fmt(v: float | None, ci: tuple[float, float] | list | None = None) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _std(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def markdown(summary: dict[str, Any], top: int = 20) -> str:
    """The overall table (naming each model's grader and protocol), one per-tag table,
    worst-at-k where there are repeats, and per model its criteria by points."""
    lines = ["#### Rubric scores (HealthBench arithmetic; 95% bootstrap interval, bootstrap std)", "",
             "| **Model** | **Score** | **Bootstrap std** | **Scored** | **Left out (no verdict)** | **Grader** "
             "| **Protocol** |", "|---|---|---|---|---|---|---|"]
    for model, s in summary.items():
        lines.append(f"| **{model}** | {_fmt(s['score'], s['ci'])} | {_std(s['bootstrap_std'])} | {s['n']} "
                     f"| {s['ungraded']} | {', '.join(s['graders'])} | {', '.join(s['protocols'])} |")
    mixed = [m for m, s in summary.items() if len(s["graders"]) > 1 or len(s["protocols"]) > 1]
    if mixed:
        lines += ["", f"Warning: {', '.join(mixed)} mix grades of several graders or protocols; "
                  "their scores do not compare with a single grader's."]
    tags = sorted({t for s in summary.values() for t in s["tags"]})
    if tags:
        lines += ["", "#### By tag (score [95% interval] ± bootstrap std, n)", "",
                  "| **Tag** | " + " | ".join(f"**{m}**" for m in summary) + " |", "|---" * (len(summary) + 1) + "|"]
        for t in tags:
            cells = [(_fmt(s["tags"][t]["score"], s["tags"][t]["ci"]) + f" ± {_std(s['tags'][t]['bootstrap_std'])}"
                      f" (n={s['tags'][t]['n']})") if t in s["tags"] else "—" for s in summary.values()]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    repeated = {m: s for m, s in summary.items() if s["worst_at_k"]}
    if repeated:
        ks = sorted({k for s in repeated.values() for k in s["worst_at_k"]})
        lines += ["", "#### Worst-at-k (expected lowest score of k replies per example)", "",
                  "| **Model** | " + " | ".join(f"**k={k}**" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
        for model, s in repeated.items():
            lines.append(f"| **{model}** | " + " | ".join(_fmt(s["worst_at_k"].get(k)) for k in ks) + " |")
    for model, s in summary.items():
        rows = s["criteria"][:top]
        lines += ["", f"#### Criteria: {model} ({len(s['criteria'])}; the first {len(rows)} by points)", "",
                  "| **Points** | **Criterion** | **Met** | **Not met** | **No verdict** |", "|---|---|---|---|---|"]
        for r in rows:
            text = r["criterion"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r['points']:g} | {text[:80]} | {r['met']} | {r['not_met']} | {r['unreadable']} |")
    return "\n".join(lines) + "\n"


def draw_charts(summary: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Bars of each model's overall and per-tag scores, with their bootstrap intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from discmed.eval.score import _cjk_font, _labels, _save

    rows = {m: s for m, s in summary.items() if s["score"] is not None}
    if not rows:
        return []
    font = _cjk_font()
    if font:
        plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
    groups = ["overall", *sorted({t for s in rows.values() for t in s["tags"]})]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(groups) + 2), 4.4))
    width = 0.8 / len(rows)
    x = np.arange(len(groups))
    for i, (label, s) in enumerate(zip(_labels(list(rows), font is not None), rows.values(), strict=True)):
        cells = [{"score": s["score"], "ci": s["ci"]}] + [s["tags"].get(g, {"score": None, "ci": None}) for g in groups[1:]]
        values = [c["score"] if c["score"] is not None else np.nan for c in cells]
        err = [[v - c["ci"][0] if c["ci"] else 0 for v, c in zip(values, cells, strict=True)],
               [c["ci"][1] - v if c["ci"] else 0 for v, c in zip(values, cells, strict=True)]]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, yerr=err, capsize=3, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(_labels(groups, font is not None), rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("rubric score (0-1)")
    ax.set_title("Rubric scores by tag (95% bootstrap interval)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    path = Path(out_dir) / "rubric_scores.png"
    _save(fig, path)
    plt.close(fig)
    return [path]


def json_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The `--json` shape (per-criterion rows left out: they are in scores.json)."""
    r = lambda v: None if v is None else round(v, 4)  # noqa: E731
    return {m: {"score": r(s["score"]), "ci": [r(v) for v in s["ci"]] if s["ci"] else None,
                "bootstrap_std": r(s["bootstrap_std"]), "n": s["n"], "ungraded": s["ungraded"],
                "dialogues": s["dialogues"], "examples": s["examples"], "graders": s["graders"],
                "protocols": s["protocols"], "worst_at_k": {k: r(v) for k, v in s["worst_at_k"].items()},
                "tags": {t: {"score": r(v["score"]), "bootstrap_std": r(v["bootstrap_std"]), "n": v["n"]}
                         for t, v in s["tags"].items()}}
            for m, s in summary.items()}
