"""Decontamination: remove training records that contain evaluation items.

DISC's CMD set was drawn from the same kind of consultation site as its 400k training
dialogues, so overlap between training data and evaluation sets is a real risk. This step
indexes the character n-grams of every evaluation item (DISC's CMB-clin / CMD / CMID
samples, CMB-Clin cases and QA, every MCQ task file: any .json, .jsonl or .csv given) and
drops a training record when it covers at least `threshold` of some item's n-grams, i.e.
the item (a question, an answer, a case) appears in it nearly whole. Coverage of the *eval
item* is measured, not of the training record: a long consultation that quotes a whole
exam question is contaminated even though the question is a small part of it, while stock
phrases (建议您到医院就诊) cover no item. Text is normalised first (no whitespace or
punctuation, lower case), so reformatting does not hide a copy.

    index = EvalIndex.from_paths(["../shared/data/cmb", "../shared/data/cmmlu"], n=10)
    summary = decontam_file("in.jsonl", "out.jsonl", index, threshold=0.5, report="removed.jsonl")
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from discmed.chat import atomic_writer, error_sink, iter_json_records
from discmed.data.dedup import conversation_text, normalize

EVAL_SUFFIXES = (".json", ".jsonl", ".csv")


def _strings(obj: Any, field: str = "") -> list[tuple[str, str]]:
    """Every (field path, string) leaf of a JSON value."""
    if isinstance(obj, str):
        return [(field, obj)]
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in _strings(v, f"{field}.{k}" if field else str(k))]
    if isinstance(obj, list):
        return [x for i, v in enumerate(obj) for x in _strings(v, f"{field}[{i}]")]
    return []


class EvalIndex:
    """Character n-grams of evaluation items → the items that contain them."""

    def __init__(self, n: int = 10, min_chars: int = 12):
        self.n, self.min_chars = n, min_chars
        self.items: list[dict] = []       # {"file", "line", "field", "text", "grams"}
        self.index: dict[str, int | list[int]] = {}
        self.files: list[str] = []

    def add(self, text: str, file: str, line: int | None, field: str) -> None:
        norm = normalize(text)
        if len(norm) < max(self.min_chars, self.n):
            return  # answer letters, ids, short labels: nothing to match on
        grams = {norm[i:i + self.n] for i in range(len(norm) - self.n + 1)}
        idx = len(self.items)
        self.items.append({"file": file, "line": line, "field": field, "text": text[:80], "grams": len(grams)})
        for g in grams:
            cur = self.index.get(g)
            if cur is None:
                self.index[g] = idx
            elif isinstance(cur, int):
                if cur != idx:
                    self.index[g] = [cur, idx]
            elif cur[-1] != idx:
                cur.append(idx)

    def add_file(self, path: str | Path) -> int:
        """Index one eval file: JSON (array or lines) string leaves, or CSV rows. Returns items added."""
        path = Path(path)
        before = len(self.items)
        if path.suffix == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as f:
                reader = csv.reader(f)
                next(reader, None)  # header
                for row in reader:
                    # One item per row: the question with its options (short cells like "A" drop out).
                    self.add(" ".join(c for c in row if len(c.strip()) > 1), str(path), reader.line_num, "row")
        else:
            for line, rec in iter_json_records(path):
                for field, text in _strings(rec):
                    self.add(text, str(path), line, field)
        self.files.append(str(path))
        return len(self.items) - before

    @classmethod
    def from_paths(cls, paths: list[str | Path], n: int = 10, min_chars: int = 12) -> EvalIndex:
        """Index files, and every .json/.jsonl/.csv under folders, in sorted order."""
        ix = cls(n=n, min_chars=min_chars)
        for p in paths:
            p = Path(p)
            if not p.exists():
                raise FileNotFoundError(f"evaluation set not found: {p}")
            files = sorted(f for f in p.rglob("*") if f.suffix in EVAL_SUFFIXES) if p.is_dir() else [p]
            for f in files:
                ix.add_file(f)
        return ix

    def match(self, text: str, threshold: float) -> tuple[dict, float] | None:
        """The most-covered eval item if its coverage by `text` reaches `threshold`, else None."""
        norm = normalize(text)
        n = self.n
        grams = {norm[i:i + n] for i in range(len(norm) - n + 1)}
        hits = grams & self.index.keys()  # set intersection in C: the cheap common case is no hit
        if not hits:
            return None
        counts: Counter = Counter()
        for g in hits:
            cur = self.index[g]
            if isinstance(cur, int):
                counts[cur] += 1
            else:
                counts.update(cur)
        best, cov = max(((i, c / self.items[i]["grams"]) for i, c in counts.items()), key=lambda x: x[1])
        return (self.items[best], cov) if cov >= threshold else None


_INDEX: EvalIndex | None = None  # the workers' copy (forked)


def _match_record(threshold: float, conv) -> tuple:
    hit = _INDEX.match(conversation_text(conv), threshold)
    line = json.dumps(conv.to_record(), ensure_ascii=False) if hit is None else None
    return conv.id, conv.source, line, hit


def decontam_file(src: str | Path, dst: str | Path, index: EvalIndex, *, threshold: float = 0.5,
                  report: str | Path | None = None, on_error: str = "skip", progress: bool = True,
                  workers: int = 1) -> dict[str, Any]:
    """Write `src` without records that contain an eval item to `dst` (atomically); returns a summary.

    `report` (JSONL) says for every removed record which eval item (file, line, field, the
    start of its text) it contains and how much of it. `workers` processes share the matching.
    """
    import functools

    from tqdm import tqdm

    from discmed.data.lineage import fingerprint, stamp
    from discmed.data.sources import map_records

    global _INDEX
    _INDEX = index
    read = fingerprint(src)  # lineage: what was read (the data card follows it)
    errors = error_sink(on_error)
    kept = 0
    removed: list[dict] = []
    by_file: Counter = Counter()
    records = map_records(src, functools.partial(_match_record, threshold), errors, workers=workers)
    with atomic_writer(dst) as f:
        for key, source, line, hit in tqdm(records, desc="decontam", unit="rec", disable=not progress):
            if hit is None:
                f.write(line + "\n")
                kept += 1
                continue
            item, cov = hit
            by_file[Path(item["file"]).name] += 1
            removed.append({"_id": key, "source": source, "reason": "eval-overlap", "coverage": round(cov, 4),
                            "eval_file": item["file"], "eval_line": item["line"], "eval_field": item["field"],
                            "eval_text": item["text"]})
    if report:
        with atomic_writer(report) as f:
            for r in removed:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return stamp({"step": "decontam", "input": str(src), "output": str(dst), "kept": kept, "removed": len(removed),
            "removed_by_eval_file": dict(by_file), "threshold": threshold, "ngram": index.n,
            "eval_items": len(index.items), "eval_files": len(index.files),
            "bad_records": len(errors or []), "errors": [str(e) for e in (errors or [])[:20]],
            "report": str(report) if report else None}, [read], dst)


def default_eval_paths(shared: str | Path) -> list[Path]:
    """The evaluation sets under a shared-data folder laid out like ../shared/data."""
    shared = Path(shared)
    candidates = [shared / "disc-medllm" / "eval" / "samples", shared / "cmb", shared / "cmmlu"]
    return [p for p in candidates if p.exists()]
