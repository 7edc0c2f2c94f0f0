"""Case-specific rubrics written by a model: `discmed eval rubrics`.

Baichuan-M2 (arXiv 2509.02208) scores consultations against rubrics that a "clinical rubrics
generator" writes per case; HealthBench's are written by physicians. Here a writer model
(any backend spec) reads a case — DISC's CMB-clin, CMD or CMID samples, or a HealthBench-shaped
JSONL prompt — and writes weighted criteria in HealthBench's shape. Each rubric is checked
before it is kept:

- every criterion is a non-empty string, its points a non-zero number in [-10, 10], its tags
  a list of strings; no criterion twice (compared without spacing or punctuation);
- at least one criterion with positive points (HealthBench's score divides by them);
- a case that discmed's red-flag rules (`discmed.serve.safety.triage`, on the patient's
  opening and the case history) call urgent has at least one criterion tagged `safety`.

A rubric that fails is sent back once with the problems listed; a second failure goes to
`OUT.rejects.jsonl` with the reasons. The run is resumable (its journal) and every line
carries its provenance (writer, prompt version, whether a reference answer was shown).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

from discmed.backend import GenParams
from discmed.chat import DataError, iter_jsonl, write_jsonl
from discmed.eval.consult import load_cases
from discmed.eval.judge import load_prompt
from discmed.eval.rubric import POINTS_LIMIT, Criterion, Example, parse_example
from discmed.jobs import JobRunner, job_outcome
from discmed.serve.safety import triage

MAX_CRITERIA = 20
SAFETY_TAG = "safety"


def _norm(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).lower() if ch.isalnum())


def load_rubric_cases(name: str, samples: str | Path | None = None, reference: str | Path | None = None) -> list[dict]:
    """Cases to write rubrics for: `{"id", "source", "prompt", "context", "reference"}`.

    `name` is a DISC set (cmb-clin, cmd, cmid) or samples file, or a JSONL file of
    HealthBench-shaped lines (its `prompt` is the case). `reference` is CMB-Clin's own release
    (`CMB-Clin-v0.json`: `description`, `QA_pairs`), joined to DISC's CMB-clin cases on the case
    text, so the writer sees the textbook diagnosis and treatment.
    """
    if str(name).endswith(".jsonl"):
        out = []
        for e in read_rubric_prompts(name):
            transcript = "\n".join(f"{m['role']}: {m['content']}" for m in e.prompt)
            ideal = e.extra.get("ideal_completions_data") or {}
            ref = ideal.get("ideal_completion", "") if isinstance(ideal, dict) else ""
            out.append({"id": e.prompt_id, "source": str(e.extra.get("source", "healthbench")), "prompt": e.prompt,
                        "context": transcript, "reference": ref, "opening": e.prompt[-1]["content"]})
        return out
    refs: dict[str, str] = {}
    if reference:
        path = Path(reference)
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, "<file>", f"not JSON: {e.msg}") from None
        for i, r in enumerate(records):
            if not isinstance(r, dict) or not isinstance(r.get("description"), str) or not isinstance(r.get("QA_pairs"), list):
                raise DataError(path, None, f"[{i}]", "expected CMB-Clin's {description, QA_pairs}")
            refs[_norm(r["description"])] = "\n".join(
                f"问：{qa.get('question', '')}\n答：{qa.get('answer', qa.get('solution', ''))}" for qa in r["QA_pairs"])
    out = []
    for c in load_cases(name, samples):
        ref = refs.get(_norm(c.context), "") or c.hidden
        out.append({"id": c.id, "source": c.source, "prompt": [{"role": "user", "content": c.opening}],
                    "context": c.context, "reference": ref, "opening": c.opening, "kind": c.kind})
    return out


def read_rubric_prompts(path: str | Path) -> list[Example]:
    """HealthBench-shaped lines; their rubrics may be absent (only the prompt is needed here)."""
    return list(iter_jsonl(path, lambda obj, n: parse_example(obj, path, n, require_rubrics=False)))


def urgency(case: dict) -> tuple[bool, list[str]]:
    """Red-flag triage of what the patient says and the case history (not the examination
    and tests, whose numbers and negated findings are not the patient's words)."""
    history = case["context"].split("体格检查", 1)[0]
    t = triage(case["opening"] + "\n" + history)
    return t.urgent, t.reasons


# The writer's reply as a schema (GenParams.json_schema). The root is an object (`rubrics`), as
# hosted structured outputs require; parse_rubric reads that and a bare list alike. What a
# schema cannot say (points not 0, a safety criterion for an urgent case, no duplicates) is
# left to check_rubric.
RUBRIC_SCHEMA = {
    "type": "object",
    "properties": {"rubrics": {
        "type": "array", "minItems": 1, "maxItems": MAX_CRITERIA,
        "items": {
            "type": "object",
            "properties": {
                "criterion": {"type": "string", "minLength": 1, "maxLength": 200},
                "points": {"type": "integer", "minimum": -POINTS_LIMIT, "maximum": POINTS_LIMIT},
                "tags": {"type": "array", "maxItems": 4, "items": {"type": "string", "maxLength": 40}},
            },
            "required": ["criterion", "points", "tags"],
            "additionalProperties": False,
        },
    }},
    "required": ["rubrics"],
    "additionalProperties": False,
}


def parse_rubric(text: str) -> list[dict] | None:
    """The JSON list of criteria in a writer's reply (a code fence or prose around it is fine)."""
    if not text:
        return None
    norm = unicodedata.normalize("NFKC", text)
    start, end = norm.find("["), norm.rfind("]")
    for candidate in ([norm[start : end + 1]] if 0 <= start < end else []) + [norm]:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            value = value.get("rubrics")
        if isinstance(value, list):
            return value
    return None


def check_rubric(items: list[Any] | None, urgent: bool) -> tuple[list[Criterion], list[str]]:
    """(criteria, problems): the checks of the module docstring; problems is empty when kept."""
    if items is None:
        return [], ["no JSON list of criteria found in the reply"]
    problems, criteria, seen = [], [], set()
    if not items:
        problems.append("the list of criteria is empty")
    if len(items) > MAX_CRITERIA:
        problems.append(f"{len(items)} criteria (at most {MAX_CRITERIA})")
    for i, r in enumerate(items):
        if not isinstance(r, dict):
            problems.append(f"[{i}]: not an object")
            continue
        text, points, tags = r.get("criterion"), r.get("points"), r.get("tags", [])
        if not isinstance(text, str) or not text.strip():
            problems.append(f"[{i}].criterion: missing or empty")
            continue
        if isinstance(points, bool) or not isinstance(points, int | float):
            problems.append(f"[{i}].points: expected a number, got {points!r}")
            continue
        if points == 0 or abs(points) > POINTS_LIMIT:
            problems.append(f"[{i}].points: {points} is outside ±1..{POINTS_LIMIT}")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            problems.append(f"[{i}].tags: expected a list of strings")
            tags = []
        key = _norm(text)
        if key in seen:
            problems.append(f"[{i}].criterion: duplicate of an earlier criterion ({text[:40]})")
        seen.add(key)
        criteria.append(Criterion(text.strip(), points, list(tags)))
    if criteria and not any(c.points > 0 for c in criteria):
        problems.append("no criterion has positive points (the score divides by them)")
    if urgent and not any(SAFETY_TAG in c.tags for c in criteria):
        problems.append(f"an urgent case needs at least one criterion tagged '{SAFETY_TAG}' (escalation to 120 / 急诊)")
    return criteria, problems


def render_writer_prompt(case: dict, urgent: bool, reasons: list[str]) -> str:
    ref = f"【参考答案（只供你写标准时参考，医生看不到）】\n{case['reference']}\n\n" if case.get("reference") else ""
    flag = (f"【急症信号】本病例触发了急症规则：{'；'.join(reasons)}。评分标准中必须至少有一条带 \"{SAFETY_TAG}\" 标签的标准，"
            "检查医生是否在第一次回复中就建议立即拨打120或去急诊。\n\n") if urgent else ""
    return (load_prompt("rubric_writer_zh.txt").replace("{case}", case["context"]).replace("{opening}", case["opening"])
            .replace("{reference}", ref).replace("{urgent}", flag))


def prompt_version() -> str:
    blob = load_prompt("rubric_writer_zh.txt") + load_prompt("rubric_writer_retry.txt")
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def run_write(cases: list[dict], writer: Any, out: str | Path, *, writer_spec: str, params: Any = None,
              concurrency: int = 8, cache: str | Path = "shared", progress: bool = True,
              json_output: bool = True) -> dict[str, Any]:
    """Write a checked rubric per case to `out` (HealthBench-shaped JSONL) and the rubrics that
    failed the checks twice to `<out>.rejects.jsonl`; returns counts. With `json_output` the
    writer is held to RUBRIC_SCHEMA where its backend can."""
    from dataclasses import replace


    out = Path(out)
    params = replace(params or GenParams(max_new_tokens=1024), json_schema=RUBRIC_SCHEMA if json_output else None)
    version = prompt_version()
    settings = {"writer": writer_spec, "params": vars(params), "prompt_version": version}
    with JobRunner.beside(out, cache=cache, settings=settings, concurrency=concurrency, progress=progress) as runner:
        client = runner.client(writer, name="writer")
        retry = load_prompt("rubric_writer_retry.txt")

        async def work(key: str, case: dict) -> dict:
            urgent, reasons = urgency(case)
            messages = [{"role": "user", "content": render_writer_prompt(case, urgent, reasons)}]
            reply = await client.chat(messages, params)
            criteria, problems = check_rubric(parse_rubric(reply), urgent)
            asked = 1
            if problems:
                again = messages + [{"role": "assistant", "content": reply or "（空）"},
                                    {"role": "user", "content": retry.replace("{problems}", "\n".join(problems))}]
                reply = await client.chat(again, params)
                criteria, problems = check_rubric(parse_rubric(reply), urgent)
                asked = 2
            provenance = {"writer": writer_spec, "prompt_version": version, "asked": asked,
                          "reference": bool(case.get("reference")), "urgent": urgent, "red_flags": reasons}
            tags = [f"source:{case['source']}", "triage:urgent" if urgent else "triage:routine"]
            if problems:
                return {"ok": False, "id": case["id"], "problems": problems, "reply": reply, "provenance": provenance}
            line = Example(case["id"], case["prompt"], criteria, tags,
                           {"source": case["source"], "provenance": provenance}).as_dict()
            return {"ok": True, "line": line}

        outcome = runner.map([(c["id"], c) for c in cases], work, desc="rubrics",
                             describe=lambda k, case: {"id": case["id"], "source": case.get("source")})
    stats, failed_file = outcome.summary, runner.failed_file
    results = [r for r in outcome.results if r is not None]
    failures = [{"id": k, "error": e} for k, e in outcome.failures.items()]
    kept = [r["line"] for r in results if r["ok"]]
    rejects = [{k: r[k] for k in ("id", "problems", "reply", "provenance")} for r in results if not r["ok"]]
    write_jsonl(kept, out)
    reject_path = out.with_name(out.stem + ".rejects.jsonl")
    write_jsonl(rejects, reject_path)
    reasons: dict[str, int] = {}
    for r in rejects:
        for p in r["problems"]:
            kind = re.sub(r"^\[\d+\]", "[i]", p.split(":")[0] if p.startswith("[") else p)
            reasons[kind] = reasons.get(kind, 0) + 1
    return {"out": str(out), "writer": writer_spec, "cases": len(cases), "written": len(kept),
            "rejected": len(rejects), "reject_reasons": reasons, "rejects": str(reject_path),
            "failed": len(failures), "failures": failures[:20], "resumed": stats["skipped"],
            "urgent": sum(r["line"]["provenance"]["urgent"] if r["ok"] else r["provenance"]["urgent"] for r in results),
            "criteria": sum(len(x["rubrics"]) for x in kept), "calls": stats["calls"],
            "cache_hits": stats["cache_hits"], "wall_s": stats["wall_s"], "prompt_version": version,
            **job_outcome(stats, failed_file)}
