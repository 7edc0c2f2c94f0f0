"""`discmed gym build`: ledgers from real cases, written by a teacher model and checked by code.

The teacher gets a case (a CMB-clin case with its reference answers from CMB-Clin's release; a
CMD or CMID question) and returns a ledger as JSON, held to the ledger's JSON schema where its
backend can. Code then checks it (`check_ledger`): it parses as a ledger (red flags point to
findings, askable findings have synonyms), every finding is grounded in the case text and every
number of the case is in some finding, and the diagnosis is the case's (it appears in the
reference answer, when there is one). A ledger that fails is asked for once more with the
reasons, then kept in `OUT.rejects.jsonl` with them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from discmed.backend import GenParams
from discmed.chat import write_jsonl
from discmed.eval.consult import load_cases
from discmed.eval.rubric_write import load_rubric_cases
from discmed.gym.ledger import DISPOSITIONS, Ledger, check_ledger
from discmed.jobs import JobRunner, cache_path, job_outcome

PROMPT = """把下面的病例整理成一个问诊模拟用的“病例账本”（JSON）。病人只知道自己的症状和经历；体格检查和化验结果只有医生检查或开单后才给出。

病例：
{case}
{reference}
要求：
1. findings：病例里的每一条事实各写一条（症状、病史、用药、过敏、体格检查、检查结果），不能遗漏病例里的数字，也不能添加病例里没有的事实。
   - id：小写英文加下划线；kind：symptom|history|medication|allergy|exam|test|social|family
   - fact：病例原文的说法；say：病人口语的说法（exam/test 写结果原文）
   - disclosure：病人开口就说的用 volunteered；问到才说的用 on_question；体格检查结果用 on_exam；化验/影像结果用 on_test
   - synonyms：医生问到这一条时会用的词（2~4个）；weight：重要程度 0.5~2
2. red_flags：需要警惕的危险信号，reveals 写揭示它的 findings 的 id。
3. diagnosis：病例的诊断（name、synonyms）和 differential（鉴别诊断）。
4. disposition：self-care | clinic | same-day | emergency 之一。
5. opening：病人第一句话（只含 volunteered 的内容）；chief_complaint：主诉。
只输出 JSON。"""

RETRY = "这个 JSON 有以下问题：{problems}。请改正后重新输出完整的 JSON。"


def ledger_schema() -> dict[str, Any]:
    """The ledger's JSON schema, for constrained decoding / structured outputs."""
    schema = Ledger.model_json_schema()
    schema.get("properties", {}).pop("version", None)
    return schema


def load_build_cases(name: str, samples: str | Path | None, reference: str | Path | None = None) -> list[dict]:
    """Cases to turn into ledgers: {id, source, text, reference}. CMB-clin cases carry their
    QA answers from CMB-Clin's release (its diagnosis is then checked against them)."""
    if reference:  # CMB-Clin's release joined on the case text (eval rubrics reads it the same way)
        return [{"id": c["id"], "source": c["source"], "text": c["context"], "reference": c["reference"] or ""}
                for c in load_rubric_cases(name, samples, reference)]
    return [{"id": c.id, "source": c.source, "text": c.context, "reference": ""} for c in load_cases(name, samples)]


def parse_ledger(reply: str, case: dict) -> tuple[Ledger | None, list[str]]:
    m = re.search(r"\{.*\}", reply, re.S)
    if not m:
        return None, ["no JSON object in the reply"]
    try:
        obj = json.loads(m.group(0))
    except json.JSONDecodeError as e:
        return None, [f"not valid JSON: {e}"]
    if isinstance(obj, dict):
        obj.setdefault("id", f"{case['source']}-{case['id']}")
        obj.setdefault("source", case["source"])
        obj.pop("version", None)
    try:
        return Ledger.model_validate(obj), []
    except ValidationError as e:
        return None, [f"{'.'.join(str(x) for x in err['loc']) or 'ledger'}: {err['msg']}" for err in e.errors()[:5]]


def run_build(cases: list[dict], teacher: Any, out: str | Path, *, teacher_spec: str, params: Any = None,
              concurrency: int = 8, cache: str | Path = "shared", progress: bool = True) -> dict[str, Any]:
    """Write checked ledgers to `out` and rejects (with reasons) beside it; resumable."""
    from dataclasses import replace

    out = Path(out)
    params = replace(params or GenParams(max_new_tokens=2048), json_schema=ledger_schema())
    with JobRunner(out.with_name(out.name + ".journal.sqlite"), concurrency=concurrency, cache=cache_path(cache),
                   progress=progress) as runner:
        runner.keep_settings({"teacher": teacher_spec, "params": vars(params)})
        client = runner.client(teacher, name="teacher")

        async def work(key: str, case: dict) -> dict:
            ref = f"\n参考答案（含诊断）：\n{case['reference']}\n" if case["reference"] else ""
            messages = [{"role": "user", "content": PROMPT.format(case=case["text"], reference=ref)}]
            problems: list[str] = []
            for attempt in range(2):
                reply = await client.chat(messages, params)
                ledger, problems = parse_ledger(reply, case)
                if ledger is not None:
                    problems = check_ledger(ledger, case["text"], case["reference"] or None)
                if not problems:
                    return {"ok": True, "ledger": json.loads(ledger.model_dump_json()), "asked": attempt + 1}
                messages = messages + [{"role": "assistant", "content": reply},
                                       {"role": "user", "content": RETRY.format(problems="；".join(problems))}]
            return {"ok": False, "id": case["id"], "source": case["source"], "problems": problems, "reply": reply}

        outcome = runner.map([(f"{c['source']}/{c['id']}", c) for c in cases], work, desc="gym build")
        failed_file = out.with_name(out.stem + ".failed.jsonl")
        runner.write_failures(failed_file, lambda k, c: {"id": c["id"], "source": c["source"]})
    done = [r for r in outcome.results if r is not None]
    kept = [r["ledger"] for r in done if r["ok"]]
    rejects = [{k: r[k] for k in ("id", "source", "problems", "reply")} for r in done if not r["ok"]]
    write_jsonl(kept, out)
    write_jsonl(rejects, out.with_name(out.stem + ".rejects.jsonl"))
    reasons: dict[str, int] = {}
    for r in rejects:
        for p in r["problems"]:
            key = p.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    return {"out": str(out), "cases": len(cases), "written": len(kept), "rejected": len(rejects),
            "reject_reasons": reasons, "dispositions": {d: sum(x["disposition"] == d for x in kept) for d in DISPOSITIONS},
            **job_outcome(outcome.summary, failed_file)}
