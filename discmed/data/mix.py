"""Mixing: the final DISC-Med-SFT file, drawn from per-source files by a recipe.

DISC-MedLLM's SFT set (paper, table 1) is, by source:

    MedDialog (rewritten) 400k · cMedQA2 (rewritten) 20k · CMeKG QA 50k · behaviour
    preference (human-curated) 2k · MedMCQA 8k · MOSS-SFT 33k · Alpaca-GPT4-zh 1k

The default recipe keeps those proportions and takes as much data as the inputs allow (the
scarcest source decides the total); `total=N` asks for N records in those proportions;
`counts={"MedDialog": 1000, …}` or `weights={…}` replace the recipe. Sampling is without
replacement and deterministic for a seed; the output order is shuffled with the same seed.
Records are chosen by file offset and read back one by one, so a 470k-record mix never holds
more than the offsets in memory.

    summary = mix_files(["rewrite.jsonl", "kgqa.jsonl"], "disc-med-sft.jsonl", seed=42)
"""

from __future__ import annotations

import codecs
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from discmed.chat import DataError, atomic_writer, decode_line, parse_record
from discmed.data.lineage import fingerprint, stamp
from discmed.data.sources import ALIASES, canonical_source  # noqa: F401 (one name per source; imported from here too)

DISC_RECIPE = {"MedDialog": 400_000, "cMedQA2": 20_000, "CMeKG": 50_000, "behavior": 2_000,
               "MedMCQA": 8_000, "MOSS-SFT": 33_000, "Alpaca-GPT4-zh": 1_000}


def plan_counts(available: dict[str, int], *, counts: dict[str, int] | None = None,
                weights: dict[str, float] | None = None, total: int | None = None) -> dict[str, int]:
    """How many records to take from each source."""
    if counts:
        return {s: min(int(counts.get(s, 0)), n) for s, n in available.items()}
    w = weights or DISC_RECIPE
    # Sources the recipe does not name get no weight; recipe sources that are absent drop out.
    share = {s: float(w.get(s, 0)) for s in available if w.get(s, 0) > 0}
    if not share:
        raise ValueError(f"no input source is in the recipe (inputs: {sorted(available)}, recipe: {sorted(w)})")
    z = sum(share.values())
    if total is None:
        # As much as possible while keeping the proportions: the scarcest source decides.
        total = int(min(available[s] / (share[s] / z) for s in share))
    plan = {s: min(available[s], int(round(total * share[s] / z))) for s in share}
    return {s: plan.get(s, 0) for s in available}


def mix_files(inputs: list[str | Path], out: str | Path, *, seed: int = 42, counts: dict[str, int] | None = None,
              weights: dict[str, float] | None = None, total: int | None = None, on_error: str = "skip",
              progress: bool = True) -> dict[str, Any]:
    """Mix DISC-format JSONL files by source into `out` (atomically); returns a summary."""
    from tqdm import tqdm


    inputs_fp = [fingerprint(p) for p in inputs]
    # source → (file index, byte offset, the record's own source name when it is not the canonical one)
    offsets: dict[str, list[tuple[int, int, str | None]]] = defaultdict(list)
    errors: list[str] = []
    renamed: dict[str, int] = defaultdict(int)
    for fi, path in enumerate(inputs):
        with open(path, "rb") as f:
            lineno = 0
            while True:
                pos = f.tell()
                raw = f.readline()
                if not raw:
                    break
                lineno += 1
                if not raw.strip():
                    continue
                try:
                    text = decode_line(raw, path, lineno)
                    try:
                        obj = json.loads(text)
                    except json.JSONDecodeError as e:
                        raise DataError(path, lineno, "json", f"invalid JSON ({e.msg})") from None
                    conv = parse_record(obj, path=path, line=lineno)
                except DataError as e:
                    if on_error != "skip":
                        raise
                    errors.append(str(e))
                    continue
                own = conv.source or Path(path).stem
                name = canonical_source(own)
                if name != conv.source:
                    renamed[f"{conv.source or '(none)'} → {name}"] += 1
                offsets[name].append((fi, pos, None if name == conv.source else name))
    available = {s: len(v) for s, v in sorted(offsets.items())}
    plan = plan_counts(available, counts=counts, weights=weights, total=total)
    rng = random.Random(seed)
    chosen: list[tuple[int, int, str | None]] = []
    for s in sorted(plan):
        chosen.extend(rng.sample(offsets[s], plan[s]))
    rng.shuffle(chosen)
    handles = [open(p, "rb") for p in inputs]
    try:
        with atomic_writer(out, "wb") as f:
            for fi, pos, rename in tqdm(chosen, desc="mix", unit="rec", disable=not progress):
                handles[fi].seek(pos)
                line = handles[fi].readline().removeprefix(codecs.BOM_UTF8).rstrip(b"\r\n")
                if rename:  # the output says each source by its one name, as the summary counts it
                    obj = json.loads(line)
                    obj["source"] = rename
                    line = json.dumps(obj, ensure_ascii=False).encode("utf-8")
                f.write(line + b"\n")
    finally:
        for h in handles:
            h.close()
    recipe = "counts" if counts else ("weights" if weights else "DISC")
    summary = {"step": "mix", "inputs": [str(p) for p in inputs], "output": str(out), "records": len(chosen),
               "recipe": recipe, "seed": seed, "available": available, "taken": plan,
               "renamed_sources": dict(renamed), "bad_records": len(errors), "errors": errors[:20]}
    return stamp(summary, inputs_fp, out)
