"""CMeKG → QA: a teacher turns a handful of knowledge-graph triples about one entity into a
patient's question and a doctor's answer grounded in them.

DISC made 50k such pairs so the model would state medical knowledge correctly. Here an
entity (a disease with its symptoms, drugs, tests, department; a drug with its usage) has up
to `k` of its triples sampled (deterministically, by seed); the teacher answers in a fixed
format (问题：… 回答：…). Code then checks (`check_qa`):

- the format parses into a question and an answer;
- the answer states every sampled fact (each object of the triples appears in it);
- the question does not give them away (no object appears in the question);
- no numbers that are not in the facts; length; no "as an AI"; Chinese.

A failure is retried once with the reasons in the prompt, then rejected with them recorded.

    summary = kgqa_file("cmekg/train_example.json", "kgqa.jsonl", "openai:http://127.0.0.1:8000/v1@tiny")
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from discmed.backend import GenParams, cut_off
from discmed.chat import error_sink
from discmed.data.lineage import fingerprint, stamp
from discmed.data.rewrite import check_common, export, load_prompts, numbers
from discmed.data.sources import load_cmekg
from discmed.jobs import JobRunner, backend_for, cache_path, job_outcome

RE_QA = re.compile(r"问题\s*[：:]\s*(?P<q>.+?)\s*回答\s*[：:]\s*(?P<a>.+)", re.S)


def sample_entities(triples: list[tuple[str, str, str, int]], *, k: int = 4, min_facts: int = 1,
                    seed: int = 0) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Group triples by subject; sample up to `k` per subject, deterministically for `seed`."""
    by_subject: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for s, p, o, _ in triples:
        by_subject[s].append((s, p, o))
    out = []
    for subject in sorted(by_subject):
        facts = by_subject[subject]
        if len(facts) < min_facts:
            continue
        rng = random.Random(f"{seed}:{subject}")  # per-subject: adding subjects does not reshuffle others
        out.append((subject, sorted(rng.sample(facts, min(k, len(facts))), key=lambda t: (t[1], t[2]))))
    return out


# The teacher's reply as a schema (GenParams.json_schema), where its backend can hold it to
# one; parse_qa reads that and the prompt's prose format (问题：… 回答：…) alike.
QA_SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string", "maxLength": 300}, "answer": {"type": "string", "maxLength": 1500}},
    "required": ["question", "answer"],
    "additionalProperties": False,
}


def parse_qa(text: str) -> tuple[str, str] | None:
    """(question, answer) from a teacher's reply: QA_SCHEMA's JSON, or 问题：… 回答：… prose."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("question"), str) and isinstance(obj.get("answer"), str):
            return obj["question"].strip(), obj["answer"].strip()
    m = RE_QA.search(text)
    if not m:
        return None
    return m.group("q").strip(), m.group("a").strip()


def check_qa(question: str, answer: str, facts: list[tuple[str, str, str]], *,
             max_chars: int = 1500) -> list[str]:
    """Reasons a generated QA pair is not grounded in `facts` (empty list = it passes)."""
    reasons = [f"question {r}" for r in check_common(question, min_chars=4, max_chars=300) if not r.startswith("too long")]
    reasons += check_common(answer, min_chars=max(20, sum(len(o) for _, _, o in facts)), max_chars=max_chars)
    missing = [o for _, _, o in facts if o not in answer]
    if missing:
        reasons.append(f"missing facts: {', '.join(missing)}")
    given = [o for s, _, o in facts if o in question and o not in s]
    if given:
        reasons.append(f"question gives away: {', '.join(given)}")
    allowed = numbers(" ".join(f"{s} {p} {o}" for s, p, o in facts))
    added = [str(n) for n in numbers(answer, drop_list_marks=True) if n not in allowed]
    if added:
        reasons.append(f"new numbers: {', '.join(added)}")
    return reasons


def kgqa_file(src: str | Path | list, dst: str | Path, teacher: str | Any, *, k: int = 4, min_facts: int = 1,
              seed: int = 0, limit: int | None = None, journal: str | Path | None = None, concurrency: int = 8,
              rate: float | None = None, retries: int = 3, max_new_tokens: int = 512, temperature: float = 0.7,
              on_error: str = "skip", cache: str | Path = "shared", progress: bool = True,
              teacher_name: str | None = None, json_output: bool = True) -> dict[str, Any]:
    """CMeKG JSON file(s) → QA conversations in `dst` (rejects beside it); returns a summary.
    With `json_output` the teacher is held to QA_SCHEMA where its backend can."""
    prompts = load_prompts()["kgqa"]
    errors = error_sink(on_error)
    paths = src if isinstance(src, list) else [src]
    before = [fingerprint(p) for p in paths]  # what the step read, for the data card's lineage
    triples = [t for p in paths for t in load_cmekg(p, errors)]
    entities = sample_entities(triples, k=k, min_facts=min_facts, seed=seed)
    if limit is not None:
        entities = entities[:limit]
    backend = backend_for(teacher, retries=retries)
    name = teacher_name or (teacher if isinstance(teacher, str) else getattr(backend, "name", type(backend).__name__))
    dst = Path(dst)
    with JobRunner(journal or dst.with_name(dst.name + ".journal.sqlite"), concurrency=concurrency, rate=rate,
                   cache=cache_path(cache), progress=progress) as runner:
        runner.set_meta(step="kgqa", teacher=name, prompt_version=prompts["version"], inputs=[str(p) for p in paths])
        client = runner.client(backend, name="teacher")
        params = GenParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                           json_schema=QA_SCHEMA if json_output else None)

        def check(reply: str, facts) -> tuple[list[str], tuple[str, str] | None]:
            qa = parse_qa(reply)
            if qa is None:
                if cut_off(reply):  # a reply cut off at the limit is not the teacher's format fault
                    return [f"cut off: the reply reached --max-new-tokens {max_new_tokens} before it was complete"], None
                return ["format: no 问题：… 回答：… in the reply"], None
            return check_qa(qa[0], qa[1], facts), qa

        async def work(key: str, entity) -> dict:
            subject, facts = entity
            facts_text = "\n".join(f"- {s} —{p}→ {o}" for s, p, o in facts)
            base = [{"role": "system", "content": prompts["system"]},
                    {"role": "user", "content": prompts["user"].format(subject=subject, facts=facts_text)}]
            reply = await client.chat(base, params)
            text = reply.strip()
            reasons, qa = check(reply, facts)
            first = reasons
            calls = 1
            if reasons:
                retry = base + [{"role": "assistant", "content": text},
                                {"role": "user", "content": prompts["retry"].format(reasons="；".join(reasons), previous=text)}]
                reply = await client.chat(retry, params)
                text = reply.strip()
                reasons, qa = check(reply, facts)
                calls += 1
            triples_json = [list(f) for f in facts]
            if reasons:
                return {"status": "rejected", "_id": key, "source": "CMeKG", "subject": subject, "triples": triples_json,
                        "reasons": reasons, "first_reasons": first, "output": text, "teacher": name,
                        "prompt_version": prompts["version"]}
            record = {"_id": key, "source": "CMeKG",
                      "conversation": [{"role": "user", "content": qa[0]}, {"role": "assistant", "content": qa[1]}],
                      "provenance": {"source_id": subject, "triples": triples_json, "teacher": name,
                                     "prompt_version": prompts["version"], "step": "kgqa", "teacher_calls": calls,
                                     "retried": calls > 1}}
            return {"status": "accepted", "record": record}

        def key(subject: str) -> str:
            return "kgqa-" + hashlib.sha1(subject.encode("utf-8")).hexdigest()[:12]

        run = runner.run([(key(s), (s, f)) for s, f in entities], work, desc="kgqa")
        summary = export(runner, dst)
        failed_file = dst.with_name(dst.name + ".failed.jsonl")
        runner.write_failures(failed_file, lambda k, entity: {"subject": entity[0], "triples": [list(f) for f in entity[1]]})
    summary.update({"step": "kgqa", "inputs": [str(p) for p in paths], "entities": len(entities), "triples": len(triples),
                    "teacher": name, "prompt_version": prompts["version"], **job_outcome(run, failed_file),
                    "teacher_calls": run["calls"], "cache_hits": run["cache_hits"],
                    "prompt_tokens": run["prompt_tokens"], "completion_tokens": run["completion_tokens"],
                    "bad_records": len(errors or []), "errors": [str(e) for e in (errors or [])[:20]]})
    return stamp(summary, before, dst)
