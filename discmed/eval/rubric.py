"""Rubric evaluation in HealthBench's form: per-case weighted criteria, each graded met / not
met by a model, scored with HealthBench's arithmetic.

HealthBench (OpenAI, 2025) grades each conversation against its own rubric. A rubric file is
JSON lines, one example per line, in HealthBench's shape (extra keys are kept and ignored):

    {"prompt_id": "…", "prompt": [{"role": "user", "content": "…"}, …],
     "rubrics": [{"criterion": "…", "points": 7, "tags": ["axis:accuracy"]}, …],
     "example_tags": ["theme:emergency_referrals", …]}

so HealthBench's own file is read unchanged, and `eval rubrics` writes the same shape for
DISC's cases. The arithmetic is HealthBench's (`healthbench_eval.calculate_score`):

- an example's score is the points of the criteria met over the sum of the positive points;
  a met criterion with negative points (a harm: a missed emergency, a wrong drug) subtracts,
  so an example's score can fall below 0 (and never exceeds 1);
- a model's score is the mean of its examples' scores, clipped to [0, 1]; a tag's score is
  the same over the examples carrying an example tag, or over only the criteria carrying a
  criterion tag (`axis:…`);
- intervals: the clipped mean over bootstrap resamples of the examples.

A grade the grader's reply does not state (no readable `criteria_met`) is asked again once,
then kept on disk as unreadable; an example with an unreadable grade is left out of the
scores and counted (`ungraded`), never scored as if the criterion were not met.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from discmed.chat import DataError, iter_jsonl, write_jsonl
from discmed.eval.judge import load_prompt

POINTS_LIMIT = 10  # HealthBench's criteria carry -10..10 points


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


# --- HealthBench's arithmetic -------------------------------------------------------------


def score_example(criteria: list[Criterion], met: list[bool | None]) -> float | None:
    """Points met over positive points (HealthBench's `calculate_score`); None when the rubric
    has no positive points or any grade is unknown (the example is then left out, and counted)."""
    possible = sum(c.points for c in criteria if c.points > 0)
    if possible <= 0 or any(m is None for m in met):
        return None
    return sum(c.points for c, m in zip(criteria, met, strict=True) if m) / possible


def clipped_mean(values: list[float]) -> float | None:
    """HealthBench's aggregate: the mean of example scores, clipped to [0, 1]."""
    if not values:
        return None
    return min(1.0, max(0.0, sum(values) / len(values)))


def bootstrap(values: list[float], n: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """A percentile interval of the clipped mean over `n` resamples of the examples."""
    import numpy as np

    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    arr = np.asarray(values, dtype=float)
    means = np.clip(arr[rng.integers(0, len(arr), size=(n, len(arr)))].mean(axis=1), 0.0, 1.0)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


# --- grading ---------------------------------------------------------------------------

_BOOL = {"true": True, "false": False, "yes": True, "no": False, "是": True, "否": False,
         "满足": True, "不满足": False, "符合": True, "不符合": False}
_MET_RE = re.compile(r"[\"']?(?:criteria_met|criterion_met|met|是否满足)[\"']?\s*[:：=]\s*[\"']?"
                     r"(true|false|yes|no|不满足|满足|不符合|符合|是|否)", re.IGNORECASE)


# HealthBench's grader reply, as a schema (GenParams.json_schema): a short reason, then the
# verdict. The reason is bounded so a small model cannot spend every token inside the string.
GRADE_SCHEMA = {
    "type": "object",
    "properties": {"explanation": {"type": "string", "maxLength": 200}, "criteria_met": {"type": "boolean"}},
    "required": ["explanation", "criteria_met"],
    "additionalProperties": False,
}


def parse_grade(text: str) -> bool | None:
    """`criteria_met` from a grader's reply (HealthBench's JSON, in a code fence or not, or a
    `criteria_met: true` line); None when the reply does not say. Its last statement wins."""
    if not text or not text.strip():
        return None
    norm = unicodedata.normalize("NFKC", text)
    for m in reversed(list(re.finditer(r"\{[^{}]*\}", norm, re.DOTALL))):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        value = obj.get("criteria_met") if isinstance(obj, dict) else None
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL:
            return _BOOL[value.strip().lower()]
    hits = _MET_RE.findall(norm)
    return _BOOL[hits[-1].lower()] if hits else None


def render_conversation(conversation: list[dict[str, str]]) -> str:
    """A transcript for the grader: roles as the grader reads them (病人 / 医生)."""
    names = {"patient": "病人", "doctor": "医生", "user": "病人", "assistant": "医生", "system": "系统"}
    return "\n\n".join(f"{names.get(t['role'], t['role'])}：{t['content']}" for t in conversation)


def render_grader_prompt(conversation: list[dict[str, str]], criterion: Criterion) -> str:
    return (load_prompt("rubric_grader_zh.txt")
            .replace("{conversation}", render_conversation(conversation))
            .replace("{criterion}", f"[{criterion.points:g}] {criterion.criterion}"))


def prompt_dialogue(example: Example, reply: str, model: str) -> dict[str, Any]:
    """A HealthBench prompt plus a model's reply as a dialogue in DISC's format."""
    role = {"user": "patient", "assistant": "doctor"}
    conversation = [{"role": role[m["role"]], "content": m["content"]} for m in example.prompt if m["role"] in role]
    return {"id": example.prompt_id, "model": model, "source": str(example.extra.get("source", "rubric")),
            "conversation": [*conversation, {"role": "doctor", "content": reply}]}


async def grade_dialogue(client: Any, conversation: list[dict[str, str]], criteria: list[Criterion],
                         params: Any) -> list[dict[str, Any]]:
    """Every criterion graded concurrently; an unreadable reply is asked again once."""
    import asyncio

    retry = load_prompt("rubric_grader_retry.txt")

    async def one(c: Criterion) -> dict[str, Any]:
        messages = [{"role": "user", "content": render_grader_prompt(conversation, c)}]
        reply = await client.chat(messages, params)
        met, asked = parse_grade(reply), 1
        if met is None:
            again = messages + [{"role": "assistant", "content": reply or "（空）"}, {"role": "user", "content": retry}]
            second = await client.chat(again, params)
            asked = 2
            if parse_grade(second) is not None or not reply.strip():
                reply, met = second, parse_grade(second)
        return {**c.as_dict(), "criteria_met": met, "grade": reply, "asked": asked}

    return list(await asyncio.gather(*(one(c) for c in criteria)))


def run_grading(dialogues: list[dict[str, Any]], examples: list[Example], grader: Any, out: str | Path, *,
                grader_spec: str, params: Any = None, concurrency: int = 8, cache: Any = None,
                progress: bool = True, json_output: bool = True) -> dict[str, Any]:
    """Grade each dialogue against the rubric of its case (matched on id); write one JSON line
    per dialogue to `out` (`id`, `model`, `source`, `example_tags`, `grades`: each criterion with
    `criteria_met` true / false / null and the grader's raw reply). Resumable (journal).
    With `json_output` the grader is held to GRADE_SCHEMA where its backend can."""
    from dataclasses import replace

    from discmed.backend import GenParams
    from discmed.jobs import JobRunner, job_outcome, run_cache

    out = Path(out)
    params = replace(params or GenParams(max_new_tokens=128), json_schema=GRADE_SCHEMA if json_output else None)
    by_id = {e.prompt_id: e for e in examples}
    matched = [d for d in dialogues if str(d["id"]) in by_id]
    if not matched:
        raise ValueError(f"none of the {len(dialogues)} dialogues has an id in the rubric file "
                         f"(ids there look like {', '.join(list(by_id)[:3])})")
    runner = JobRunner(out.with_name(out.name + ".journal.sqlite"), concurrency=concurrency,
                       cache=run_cache(out, cache), progress=progress)
    try:
        runner.keep_settings({"grader": grader_spec, "params": vars(params), "prompt": load_prompt("rubric_grader_zh.txt")})
        client = runner.client(grader, name="grader")

        async def work(key: str, d: dict[str, Any]) -> dict:
            e = by_id[str(d["id"])]
            grades = await grade_dialogue(client, d["conversation"], e.rubrics, params)
            return {"id": str(d["id"]), "model": d["model"], "source": d["source"],
                    "example_tags": e.example_tags, "grades": grades}

        items = [(f"{d['model']}/{d['source']}/{d['id']}", d) for d in matched]
        wanted = {k for k, _ in items}
        stats = runner.run(items, work, desc="rubric grading")
        results = [r for k, r in runner.results() if k in wanted]
        failures = [{"key": k, "error": e} for k, e in runner.failures() if k in wanted]
        failed_file = out.with_name(out.stem + ".failed.jsonl")
        runner.write_failures(failed_file, lambda k, d: {"model": d["model"], "source": d["source"], "id": d["id"]})
    finally:
        runner.close()
    write_jsonl(results, out)
    grades = [g for r in results for g in r["grades"]]
    return {"out": str(out), "grader": grader_spec, "dialogues": len(dialogues), "matched": len(matched),
            "unmatched": len(dialogues) - len(matched), "graded": len(results), "failed": len(failures),
            "failures": failures[:20], "criteria": len(grades),
            "unreadable": sum(g["criteria_met"] is None for g in grades),
            "asked_again": sum(g["asked"] > 1 for g in grades),
            "calls": stats["calls"], "cache_hits": stats["cache_hits"], "wall_s": stats["wall_s"],
            **job_outcome(stats, failed_file)}


def run_respond(examples: list[Example], model: Any, out: str | Path, *, model_spec: str, name: str,
                params: Any = None, concurrency: int = 8, cache: Any = None, progress: bool = True) -> list[dict]:
    """A model's reply to each example's prompt (HealthBench's protocol: one reply to the
    conversation so far), written as a dialogue file in DISC's format."""
    from discmed.backend import GenParams
    from discmed.eval.consult import write_dialogues
    from discmed.jobs import JobRunner, job_outcome, raise_for_failures, run_cache

    out = Path(out)
    params = params or GenParams(max_new_tokens=512)
    runner = JobRunner(out.with_name(out.name + ".journal.sqlite"), concurrency=concurrency,
                       cache=run_cache(out, cache), progress=progress)
    try:
        runner.keep_settings({"model": model_spec, "name": name, "params": vars(params)})
        client = runner.client(model, name="model")

        async def work(key: str, e: Example) -> dict:
            return prompt_dialogue(e, (await client.chat(e.prompt, params)).strip(), name)

        stats = runner.run([(e.prompt_id, e) for e in examples], work, desc=f"respond {name}")
        records = [r for _, r in runner.results()]
        failed_file = out.with_name(out.stem + ".failed.jsonl")
        runner.write_failures(failed_file, lambda k, e: {"prompt_id": e.prompt_id})
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


def summarize(lines: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """{model: {"score", "ci", "n", "ungraded", "tags": {tag: {...}}, "criteria": [...]}}."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        by_model[line["model"]].append(line)
    out: dict[str, Any] = {}
    for model, items in by_model.items():
        scores, ungraded = [], 0
        example_tags: dict[str, list[float]] = defaultdict(list)
        criterion_tags: dict[str, list[float]] = defaultdict(list)
        per_criterion: dict[str, dict[str, Any]] = {}
        for line in items:
            grades = line["grades"]
            crits = [Criterion(g["criterion"], g["points"], g.get("tags", [])) for g in grades]
            met = [g["criteria_met"] for g in grades]
            s = score_example(crits, met)
            if s is None:
                ungraded += any(m is None for m in met)
            else:
                scores.append(s)
                for t in line.get("example_tags", []):
                    example_tags[t].append(s)
                for t in {t for c in crits for t in c.tags}:
                    # HealthBench's criterion-tag score: the example scored on those criteria only.
                    sub = [(c, m) for c, m in zip(crits, met, strict=True) if t in c.tags]
                    ts = score_example([c for c, _ in sub], [m for _, m in sub])
                    if ts is not None:
                        criterion_tags[t].append(ts)
            for c, m in zip(crits, met, strict=True):
                row = per_criterion.setdefault(c.criterion, {"criterion": c.criterion, "points": c.points,
                                                             "tags": c.tags, "met": 0, "not_met": 0, "unreadable": 0})
                row["met" if m else "not_met" if m is False else "unreadable"] += 1
        tags = {}
        for t, v in sorted({**criterion_tags, **example_tags}.items()):
            tags[t] = {"score": clipped_mean(v), "ci": bootstrap(v, seed=seed), "n": len(v)}
        out[model] = {"score": clipped_mean(scores), "ci": bootstrap(scores, seed=seed), "n": len(scores),
                      "ungraded": ungraded, "dialogues": len(items), "tags": tags,
                      "criteria": sorted(per_criterion.values(), key=lambda r: (-r["points"], r["criterion"]))}
    return out


def _fmt(v: float | None, ci: tuple[float, float] | list | None = None) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown(summary: dict[str, Any], top: int = 20) -> str:
    """The overall table, one per-tag table, and per model its most and least met criteria."""
    lines = ["#### Rubric scores (HealthBench arithmetic, 95% bootstrap interval)", "",
             "| **Model** | **Score** | **Scored** | **Left out (unreadable grade)** |", "|---|---|---|---|"]
    for model, s in summary.items():
        lines.append(f"| **{model}** | {_fmt(s['score'], s['ci'])} | {s['n']} | {s['ungraded']} |")
    tags = sorted({t for s in summary.values() for t in s["tags"]})
    if tags:
        lines += ["", "#### By tag", "", "| **Tag** | " + " | ".join(f"**{m}**" for m in summary) + " |",
                  "|---" * (len(summary) + 1) + "|"]
        for t in tags:
            cells = [(_fmt(s["tags"][t]["score"], s["tags"][t]["ci"]) + f" (n={s['tags'][t]['n']})") if t in s["tags"]
                     else "—" for s in summary.values()]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    for model, s in summary.items():
        rows = s["criteria"][:top]
        lines += ["", f"#### Criteria: {model} ({len(s['criteria'])}; the first {len(rows)} by points)", "",
                  "| **Points** | **Criterion** | **Met** | **Not met** | **Unreadable** |", "|---|---|---|---|---|"]
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
    return {m: {"score": r(s["score"]), "ci": [r(v) for v in s["ci"]] if s["ci"] else None, "n": s["n"],
                "ungraded": s["ungraded"], "dialogues": s["dialogues"],
                "tags": {t: {"score": r(v["score"]), "n": v["n"]} for t, v in s["tags"].items()}}
            for m, s in summary.items()}
