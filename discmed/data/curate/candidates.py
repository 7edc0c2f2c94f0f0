"""Candidate replies for curation: generate several per consultation from several models or
temperatures, or load ones made elsewhere, into a curation `Store` with their provenance.

Generation resumes: a candidate is keyed by (item, model spec, sample number), so a rerun after
an interruption generates only what is missing. Sample i of every model uses the i-th temperature
of the list (cycling) and seed `seed + i`, so `--n 3 --temperatures 0.3,0.7,1.0` gives each
consultation three replies at three temperatures from each model. A sample whose text equals an
earlier candidate of the same item is kept for the record but not shown twice.

Input: DISC-Med-SFT or OpenAI `messages` JSONL. A consultation that ends with an assistant turn
has that turn taken off (the candidates replace it); with `with_reference` it becomes a candidate
of its own, model "reference" — the real doctor's reply next to the models'. A file for `load`
may carry its candidates on each line:

    {"_id": "q1", "conversation": [{"role": "user", "content": "..."}],
     "candidates": ["reply", {"text": "reply", "model": "gpt-4o", "params": {"temperature": 0.7}}]}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from discmed.backend import GenParams, load_backend, resolve
from discmed.chat import DataError, iter_jsonl, parse_record
from discmed.data.curate.store import Store
from discmed.jobs import JobRunner, backend_for, cache_path


def read_prompts(path: str | Path, with_reference: bool = False) -> list[dict]:
    """Consultations of a JSONL file as store records ({"id", "source", "messages",
    "candidates"}). Raises `DataError` (file:line: field: message) on the first bad line."""
    records = []
    seen: dict[str, int] = {}
    # Lines rather than iter_conversations: errors in the extra "candidates" field and
    # duplicate ids must name their line too.
    def parse(obj: Any, line: int) -> tuple[int, Any]:
        return line, parse_record(obj, path=path, line=line, require_assistant=False)

    for line, conv in iter_jsonl(path, parse):
        if conv.id in seen:
            raise DataError(
                path, line, "_id", f"duplicate id {conv.id!r} (first on line {seen[conv.id]})"
            )
        seen[conv.id] = line
        messages = list(conv.messages)
        reference = None
        if messages[-1]["role"] == "assistant":
            reference = messages.pop()["content"]
        record = {
            "id": conv.id,
            "source": conv.source or "curate",
            "messages": messages,
            "candidates": [],
        }
        if with_reference and reference is not None:
            record["candidates"].append(
                {"text": reference, "model": "reference", "params": {}, "sample": 0}
            )
        raw = conv.extra.get("candidates")
        if raw is not None:
            record["candidates"] += _parse_candidates(raw, path, line)
        records.append(record)
    return records


def _parse_candidates(raw: Any, path: str | Path, line: int) -> list[dict]:
    def fail(field: str, message: str) -> DataError:
        return DataError(path, line, field, message)

    if not isinstance(raw, list):
        raise fail("candidates", f"expected a list, got {type(raw).__name__}")
    out = []
    for i, c in enumerate(raw):
        if isinstance(c, str):
            c = {"text": c}
        if not isinstance(c, dict):
            raise fail(f"candidates[{i}]", f"expected a string or an object, got {type(c).__name__}")
        text = c.get("text")
        if not isinstance(text, str) or not text.strip():
            raise fail(f"candidates[{i}].text", "missing or empty")
        params = c.get("params", {})
        if not isinstance(params, dict):
            raise fail(f"candidates[{i}].params", f"expected an object, got {type(params).__name__}")
        model = c.get("model", "imported")
        if not isinstance(model, str) or not model:
            raise fail(f"candidates[{i}].model", "expected a non-empty string")
        created = c.get("created")
        if created is not None and not isinstance(created, int | float):
            raise fail(f"candidates[{i}].created", "expected a unix time (number)")
        out.append({"text": text, "model": model, "params": params, "created": created})
    return out


def load_file(store: Store, path: str | Path, with_reference: bool = False) -> dict:
    """Load consultations (and any candidates on their lines) into the store."""
    records = read_prompts(path, with_reference=with_reference)
    items, cands = store.add_many(records)
    return {"records": len(records), "items_added": items, "candidates_added": cands}


class EmptyReply(RuntimeError):
    """A model that answered nothing: the sample is not stored and is asked again next time."""


def generate_candidates(
    store: Store,
    prompts: list[dict],
    models: list[str],
    n: int = 3,
    temperatures: list[float] | None = None,
    max_new_tokens: int = 256,
    top_p: float = 0.95,
    seed: int = 0,
    batch_size: int = 8,
    rate: float | None = None,
    cache: str | Path = "shared",
    on_progress: Callable[[int], None] | None = None,
) -> dict:
    """Add `prompts` to the store and generate `n` candidates per prompt from each model spec,
    through the job engine (concurrency, rate limit, the API client's retries, the call cache
    keyed by model identity). Skips what is already stored. `on_progress(k)` is called as
    replies arrive; `batch_size` replies are in flight at once (a local model batches them).
    Failed calls are listed in the summary (`failures`, with each one's reason); a model whose
    endpoint keeps failing stops the run (`stopped`), and the models after it are not asked."""
    temperatures = temperatures or [0.7]
    store.add_many(prompts)
    summary = {"items": len(prompts), "generated": 0, "skipped": 0, "empty": 0, "duplicates": 0, "failed": 0,
               "failures": [], "first_error": None, "stopped": None, "not_attempted": 0}
    journal = store.path.with_name(store.path.name + ".candidates.journal.sqlite")
    for spec in models:
        todo = [(p, i) for i in range(n) for p in prompts if not store.has_candidate(p["id"], spec, i)]
        summary["skipped"] += n * len(prompts) - len(todo)
        if not todo:
            continue
        local = resolve(spec).local
        backend = backend_for(spec) if not local else _local(spec, batch_size)
        with JobRunner(journal, concurrency=batch_size, rate=rate, cache=cache_path(cache), progress=False) as runner:
            stopped = _generate(runner, store, spec, backend, todo, summary, temperatures, max_new_tokens, top_p, seed,
                                on_progress)
        if stopped:
            break
    summary["duplicates"] = store.progress()["duplicates"]
    return summary


def _generate(runner: Any, store: Any, spec: str, backend: Any, todo: list, summary: dict, temperatures: list[float],
              max_new_tokens: int, top_p: float, seed: int, on_progress: Callable[[int], None] | None) -> bool:
    """One model's candidates through the job engine; whether its endpoint stopped the run."""
    client = runner.client(backend, name=spec)

    async def work(key: str, job: tuple[dict, int]) -> dict:
        p, i = job
        params = GenParams(max_new_tokens=max_new_tokens, temperature=temperatures[i % len(temperatures)],
                           top_p=top_p, seed=seed + i)
        text = (await client.chat(p["messages"], params)).strip()
        if on_progress:
            on_progress(1)
        if not text:
            summary["empty"] += 1
            raise EmptyReply("empty reply")  # a failed job, not stored: a rerun tries this sample again
        store.add_many([{"id": p["id"], "candidates": [{"text": text, "model": spec, "params": {
            **params.as_dict(), "model_identity": client.model}, "sample": i, "created": time.time()}]}])
        return {"stored": True}

    run = runner.run([(f"{spec}|{p['id']}|{i}", (p, i)) for p, i in todo], work, desc=f"candidates {spec}")
    failures = [(k, p, e, kind) for k, (p, e, kind) in runner.failed_items.items() if not e.startswith("EmptyReply")]
    summary["generated"] += run["done"]
    summary["failed"] += len(failures)
    summary["failures"] += [{"key": k, "model": spec, "id": p[0]["id"], "sample": p[1], "kind": kind, "error": e}
                            for k, p, e, kind in failures]
    summary["first_error"] = summary["first_error"] or (failures[0][2] if failures else None)
    if run["stopped"]:
        summary["stopped"] = f"{spec}: {run['stopped']}"
        summary["not_attempted"] += run["not_attempted"]
    return bool(run["stopped"])


def _local(spec: str, batch_size: int):
    return load_backend(spec, batch_size=batch_size)
