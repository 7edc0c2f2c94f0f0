"""Decontamination: remove training records that contain evaluation items.

DISC's CMD set was drawn from the same kind of consultation site as its 400k training
dialogues, and exam questions circulate on the web, so training data can hold evaluation
items. This step reads every evaluation set discmed evaluates on as *structured items* —
an exam question with its options and answer (CMMLU, MLEC-QA, CMB-Exam, CMExam, MedQA,
MedMCQA, read by `discmed.eval.loaders`; CMB-Exam's test split without answers too), a
CMB-Clin case (description and QA pairs), one of DISC's CMB-clin / CMD / CMID samples
(case, patient question, reference answer) — and drops a training record that contains one.
A file of another shape (DISC's released dialogues, say) falls back to its string leaves,
each counted alone only when long; the summary says which shape each file was read as.

Exam questions are short (CMMLU's median is 17 characters, options 5), so a record is
compared with each part of an item separately, after normalisation (NFKC, lower case, no
whitespace or punctuation: option labels "A." / "(1)" / "①" and reformatting leave the parts
intact), and the rules say how much of an item makes a leak:

- a standalone text (a case, a patient question, a CMB-Clin description) of at least
  `min_text` characters appears whole, or `short_threshold` of its character n-grams do
  (`threshold` of them for one of at least `min_fuzzy` characters: a partial or edited copy);
- an exam question of at least `question_alone` characters appears (by the same measure);
- a question, exactly, and at least `min_options` of its options elsewhere in the record —
  or `threshold` of the question's n-grams and all its options but one — `min_evidence`
  characters in all;
- a question with its answer right after it (within `pair_window` characters): an MCQ's
  question and correct option text, a CMB-Clin QA pair, `min_evidence` characters together.

Options alone never count (common words: 蛋白质, 肝, 1); neither does a CMB-Clin answer under
`min_fuzzy` characters (a diagnosis name is not a leak without its question). An item no rule
can fire on — a 4-character question with one-character options — is *too short to index*:
counted and listed (`too_short`), not silently passed. A patient question under `min_text`
characters (经前肚子疼怎么办) is too common to look for inside a message; it is listed too,
and found only when a whole message is that question. Candidates are found through a few
rare n-grams of each part (`anchors`), then checked with the rules above. The rules were
set on the tuning half of `benchmarks/decontam_recall.py` and are measured on its other half;
where that half could not tell settings apart (most of them), the defaults are reasoned.

    index = EvalIndex.from_paths(["../shared/data/cmb", "../shared/data/cmmlu"])
    summary = decontam_file("in.jsonl", "out.jsonl", index, report="removed.jsonl", too_short="short.jsonl")
"""

from __future__ import annotations

import csv
import functools
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from discmed.chat import DataError, atomic_writer, error_sink, iter_json_records
from discmed.data.lineage import fingerprint, stamp
from discmed.data.sources import map_records
from discmed.eval.loaders import LOADERS, Task

EVAL_SUFFIXES = (".json", ".jsonl", ".csv")
_NOISE = re.compile(r"[\W_]+")  # everything but letters and digits, in every script


def normalize(text: str) -> str:
    """NFKC (full-width → ASCII, ① → 1), lower case, letters and digits only."""
    return _NOISE.sub("", unicodedata.normalize("NFKC", text)).lower()


@dataclass
class Rules:
    """What counts as a leak (see the module docstring for how the defaults were set)."""

    n: int = 5                # n-gram length: anchors and coverage
    threshold: float = 0.5    # share of a text's n-grams that marks it present (exact = 1.0)
    min_text: int = 10        # a standalone text this long counts alone (shorter: only as a whole message)
    min_fuzzy: int = 30       # ... and from this long, when `threshold` of its n-grams appear
    short_threshold: float = 0.8  # the share for a text between min_text and min_fuzzy characters
    question_alone: int = 12  # an exam question this long counts alone, as a standalone text does
    min_options: int = 2      # options found beside (most of) the question
    min_evidence: int = 12    # characters of question + options (or + answer) at least
    pair_window: int = 40     # the answer starts within this many characters after the question
    anchors_cap: int = 64     # an n-gram shared by more items than this anchors none of them


Part = tuple[str, str]  # (field, normalised text)


@dataclass
class Item:
    """One evaluation item: an exam question, a case, a sample; parts normalised."""

    file: str
    line: int | None
    preview: str
    question: Part | None = None                           # an MCQ's question
    options: list[Part] = field(default_factory=list)      # its options
    answer: list[str] = field(default_factory=list)        # its correct options' texts
    texts: list[tuple[str, str, int]] = field(default_factory=list)  # (field, text, length it counts alone from)
    pairs: list[tuple[Part, Part]] = field(default_factory=list)     # (question, answer) pairs, e.g. CMB-Clin QA

    def parts(self) -> list[str]:
        out = [self.question[1]] if self.question else []
        out += [o for _, o in self.options] + [t for _, t, _ in self.texts] + [x[1] for p in self.pairs for x in p]
        return out


# ---------------------------------------------------------------- reading evaluation sets


def _line(source: str) -> int | None:
    tail = source.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _mcq(path: Path, line: int | None, qfield: str, question: str, options: dict[str, str], ofield, answer: str) -> Item:
    return Item(str(path), line, question[:80], question=(qfield, normalize(question)),
                options=[(ofield(k), normalize(v)) for k, v in options.items()],
                answer=[normalize(options[a]) for a in answer if a in options])


# format → (question field, option field name from its letter), for the report
_MCQ_FIELDS = {
    "cmmlu": ("Question", lambda k: k), "mlecqa": ("qtext", lambda k: f"options.{k}"),
    "cmb_exam": ("question", lambda k: f"option.{k}"), "cmexam": ("Question", lambda k: f"Options.{k}"),
    "medqa": ("question", lambda k: f"options.{k}"),
    "medmcqa": ("question", lambda k: f"op{k.lower()}"),
}


def _load_mcq(path: Path, fmt: str, **task_kw) -> list[Item]:
    """An exam file through the eval loader of its format (a bad record is the loader's DataError)."""
    task = Task(name=path.stem, format=fmt, test=path.name, **task_kw)
    qfield, ofield = _MCQ_FIELDS[fmt]
    return [_mcq(path, _line(q.source), qfield, q.question, q.options, ofield, q.answer)
            for q in LOADERS[fmt](path, path.stem, task)]


def _strings(obj: Any, field: str = "") -> list[tuple[str, str]]:
    """Every (field path, string) leaf of a JSON value."""
    if isinstance(obj, str):
        return [(field, obj)]
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in _strings(v, f"{field}.{k}" if field else str(k))]
    if isinstance(obj, list):
        return [x for i, v in enumerate(obj) for x in _strings(v, f"{field}[{i}]")]
    return []


def _case_item(path: Path, line: int, rec: dict, rules: Rules) -> Item:
    """CMB-Clin ({description, QA_pairs}) or one of DISC's samples (case / first_question / question / raw_anwser)."""
    texts, pairs = [], []
    for key in ("description", "case", "first_question", "question", "originalText"):  # originalText: CMID's own file
        if isinstance(rec.get(key), str):
            texts.append((key, normalize(rec[key]), rules.min_text))
    if isinstance(rec.get("raw_anwser"), str):  # CMD's real doctor's answer (sic): long, counts alone when long
        texts.append(("raw_anwser", normalize(rec["raw_anwser"]), rules.min_fuzzy))
    for i, qa in enumerate(rec.get("QA_pairs") or []):
        if not isinstance(qa, dict) or not isinstance(qa.get("question"), str):
            raise DataError(path, line, f"QA_pairs[{i}].question", "expected a string")
        key = "answer" if "answer" in qa else "solution"  # CMB-Clin's current release renames answer → solution
        if not isinstance(qa.get(key), str):
            raise DataError(path, line, f"QA_pairs[{i}].answer", "expected a string")
        q, a = (f"QA_pairs[{i}].question", normalize(qa["question"])), (f"QA_pairs[{i}].{key}", normalize(qa[key]))
        # A CMB-Clin answer alone only when long: a short one is a diagnosis name, not a leak without its question.
        texts.append((a[0], a[1], rules.min_fuzzy))
        pairs.append((q, a))
    if not texts:
        raise DataError(path, line, "question", "missing: a case needs case, first_question, question, description "
                                                "or QA_pairs text")
    preview = next((str(rec[k]) for k in ("title", "question", "first_question", "case", "description") if rec.get(k)), "")
    return Item(str(path), line, preview[:80], texts=texts, pairs=pairs)


def read_eval_file(path: str | Path, rules: Rules | None = None) -> tuple[str, list[Item]]:
    """(the shape read, the items) of one evaluation file: an exam format of `discmed.eval.loaders`,
    `cases` (CMB-Clin, DISC's samples, CMID), or `leaves` (an unknown shape: every string leaf)."""
    path, rules = Path(path), rules or Rules()
    if path.suffix == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = set(next(csv.reader(f), []))
        if {"Question", "A", "B", "C", "D", "Answer"} <= header:
            return "cmmlu", _load_mcq(path, "cmmlu")
        if {"Question", "Options", "Answer"} <= header:
            return "cmexam", _load_mcq(path, "cmexam")
        items = []
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            start = 2
            for row in reader:
                texts = [(str(k), normalize(v), rules.min_fuzzy) for k, v in row.items() if isinstance(v, str)]
                items.append(Item(str(path), start, " ".join(str(v) for v in row.values())[:80], texts=texts))
                start = reader.line_num + 1
        return "leaves", items
    records = list(iter_json_records(path))
    first = next((r for _, r in records if isinstance(r, dict)), {})
    if "qtext" in first and "options" in first:
        return "mlecqa", _load_mcq(path, "mlecqa")
    if isinstance(first.get("option"), dict) and "question" in first:
        if all(isinstance(r, dict) and "answer" in r for _, r in records):
            return "cmb_exam", _load_mcq(path, "cmb_exam")
        # CMB-Exam's test split ships without answers: question and options still leak.
        out = []
        for line, r in records:
            if not isinstance(r, dict) or not isinstance(r.get("question"), str) or not isinstance(r.get("option"), dict):
                raise DataError(path, line, "question/option", "expected CMB-Exam's question and option object")
            out.append(_mcq(path, line, "question", r["question"], {str(k): str(v) for k, v in r["option"].items()},
                            lambda k: f"option.{k}", ""))
        return "cmb_exam", out
    if isinstance(first.get("options"), dict) and "question" in first:
        return "medqa", _load_mcq(path, "medqa")
    if "opa" in first and "question" in first:
        try:
            return "medmcqa", _load_mcq(path, "medmcqa")
        except DataError as e:  # the Hugging Face copy counts `cop` from 0
            if e.field != "cop":
                raise
            return "medmcqa", _load_mcq(path, "medmcqa", cop_base=0)
    if ("description" in first and "QA_pairs" in first) or "case" in first or "originalText" in first or (
            isinstance(first.get("question"), str) and not first.get("options")):
        for line, r in records:
            if not isinstance(r, dict):
                raise DataError(path, line, "record", "not a JSON object")
        return "cases", [_case_item(path, line, r, rules) for line, r in records]
    # An unknown shape (DISC's released dialogues, judge prompts …): every string leaf, counted alone
    # only when long (a short leaf of an unknown file may be a stock phrase such as 请问您还有其他问题吗).
    return "leaves", [Item(str(path), line, json.dumps(r, ensure_ascii=False)[:80],
                 texts=[(f, normalize(t), rules.min_fuzzy) for f, t in _strings(r)]) for line, r in records]


# ---------------------------------------------------------------- the index


def _grams(text: str, n: int) -> list[str]:
    return [text[i:i + n] for i in range(len(text) - n + 1)]


@functools.lru_cache(maxsize=8192)  # the parts that common phrases keep proposing are checked again and again
def _gram_set(text: str, n: int) -> frozenset[str]:
    return frozenset(_grams(text, n))


class EvalIndex:
    """Evaluation items, found in a record through a few rare n-grams of each part."""

    def __init__(self, rules: Rules | None = None, **kw):
        self.rules = rules or Rules(**kw)
        self.items: list[Item] = []
        self.files: list[str] = []
        self.shapes: dict[str, str] = {}  # file → the shape it was read as
        self.too_short: list[dict] = []  # items no rule can fire on, with why
        self.anchors: dict[str, list[int]] = {}  # n-gram (or a whole short part) → items
        self.whole: dict[str, list[int]] = {}    # a short text → items, found as a whole message
        self.short: dict[str, list[int]] = {}    # a whole part shorter than n → items (a few)

    @property
    def n(self) -> int:
        return self.rules.n

    @classmethod
    def from_paths(cls, paths: list[str | Path], rules: Rules | None = None, **kw) -> EvalIndex:
        """Index files, and every .json/.jsonl/.csv under folders, in sorted order."""
        ix = cls(rules, **kw)
        for p in paths:
            p = Path(p)
            if not p.exists():
                raise FileNotFoundError(f"evaluation set not found: {p}")
            for f in sorted(f for f in p.rglob("*") if f.suffix in EVAL_SUFFIXES) if p.is_dir() else [p]:
                ix.add_items(*read_eval_file(f, ix.rules), str(f))
        ix.build()
        return ix

    def add_items(self, shape: str, items: list[Item], file: str) -> None:
        self.items += items
        self.files.append(file)
        self.shapes[file] = shape

    def _why_short(self, it: Item) -> str | None:
        """Why no rule can fire on `it`, or None when one can."""
        R = self.rules
        if it.question:
            q = len(it.question[1])
            opts = sum(len(o) for _, o in it.options)
            if (q >= min(R.question_alone, R.min_fuzzy) or (len(it.options) >= R.min_options and q + opts >= R.min_evidence)
                    or any(q + len(a) >= R.min_evidence for a in it.answer)):
                return None
            return f"question of {q} characters, options {opts} in all: under {R.min_evidence} together"
        if any(len(t) >= max(m, R.min_text) for _, t, m in it.texts):
            return None
        if any(len(q) + len(a) >= R.min_evidence for (_, q), (_, a) in it.pairs):
            return None
        return f"every text under {R.min_text} characters"

    def build(self) -> None:
        """Choose each part's anchors: the rarest n-gram in each stretch of it (rare across items).

        An item whose parts are all shorter than n (咽的分部: 咽隐窝 口咽部 …) is anchored on its
        parts themselves; a standalone text under `min_text` characters (a CMID question such as
        经前肚子疼怎么办) is found only when a whole message is that text, and listed as too short.
        """
        n, cap, R = self.rules.n, self.rules.anchors_cap, self.rules
        df: Counter = Counter()
        for it in self.items:
            df.update({g for p in it.parts() for g in _grams(p, n)} | {p for p in it.parts() if 3 <= len(p) < n})
        self.anchors, self.short, self.whole, self.too_short = {}, {}, {}, []
        for idx, it in enumerate(self.items):
            why = self._why_short(it)
            chosen: set[str] = set()
            if why is None:
                for p in it.parts():
                    gs = _grams(p, n)
                    k = min(8, 1 + len(p) // 10)  # a 17-character question: 2 anchors; a 400-character case: 8
                    for s in range(k):
                        seg = gs[s * len(gs) // k:(s + 1) * len(gs) // k]
                        if seg and df[g := min(seg, key=lambda g: df[g])] <= cap:
                            chosen.add(g)
                if not chosen:  # every part shorter than n: the rarest whole part of 3+ characters
                    short = sorted((df[p], p) for p in it.parts() if 3 <= len(p) < n and df[p] <= cap)
                    chosen = {short[0][1]} if short else set()
                if not chosen:
                    why = f"no part of 3+ characters is shared by at most {cap} items (all too common)"
            # A patient's question under min_text characters (经前肚子疼怎么办) is too common to look
            # for inside a message; a message that is exactly it is still a copy.
            whole = [(f, t) for f, t, alone in it.texts if alone == R.min_text and 2 <= len(t) < R.min_text]
            for _, t in whole:
                self.whole.setdefault(t, []).append(idx)
            if why is not None or whole:
                f = it.question[0] if it.question else (whole or it.texts or [("",)])[0][0]
                note = "; found only as a whole message" if whole else ""
                self.too_short.append({"eval_file": it.file, "eval_line": it.line, "eval_field": f, "eval_text": it.preview,
                                       "part": why is None,
                                       "reason": (why or f"{f} under {R.min_text} characters (the item's other parts are "
                                                         "indexed)") + note})
            if why is not None:
                continue
            for g in chosen:
                (self.anchors if len(g) == n else self.short).setdefault(g, []).append(idx)

    def _present(self, part: str, r: str, grams: set[str]) -> float:
        """1.0 when `part` is in `r`, else the share of its n-grams in `grams`."""
        if part in r:
            return 1.0
        gs = _gram_set(part, self.rules.n)
        return len(gs & grams) / len(gs) if gs else 0.0

    def check(self, idx: int, r: str, grams: set[str]) -> tuple[float, float, list[str]] | None:
        """(score, coverage, fields matched) when item `idx` leaks into normalised text `r`, else None.

        The score is the number of the item's characters found: the best of several matches wins.
        """
        it, R = self.items[idx], self.rules
        found: list[tuple[float, float, list[str]]] = []
        for f, t, alone in it.texts:
            if len(t) >= max(alone, R.min_text) and (cov := self._present(t, r, grams)) >= self._needed(t):
                found.append((cov * len(t), cov, [f]))
        for (fq, q), (fa, a) in it.pairs:
            if R.threshold <= 1.0 and self._pair(q, a, r):
                found.append((len(q) + len(a), 1.0, [fq, fa]))
        if it.question:
            fq, q = it.question
            qcov = self._present(q, r, grams) if len(q) >= R.n else float(q in r)
            if qcov >= R.threshold:
                exact = qcov == 1.0
                if len(q) >= R.question_alone and qcov >= self._needed(q):
                    found.append((qcov * len(q), qcov, [fq]))
                rest = r.replace(q, "", 1) if exact else r  # an option inside the question is no evidence
                opts = [(f, o) for f, o in it.options if o and o in rest]
                ev = qcov * len(q) + sum(len(o) for _, o in opts)
                # Half a question is common words (…最常用的免疫抑制剂是): then all its options but one.
                need = R.min_options if exact else max(R.min_options, len(it.options) - 1)
                if len(opts) >= need and ev >= R.min_evidence:
                    found.append((ev, qcov, [fq] + [f for f, _ in opts]))
                if exact:
                    found += [(len(q) + len(a), 1.0, [fq, "answer"]) for a in it.answer if self._pair(q, a, r)]
        return max(found, key=lambda m: m[0]) if found else None

    def _needed(self, text: str) -> float:
        """The share of a text's n-grams that marks it present: more of a shorter one."""
        R = self.rules
        return R.threshold if len(text) >= R.min_fuzzy else max(R.threshold, R.short_threshold)

    def _pair(self, q: str, a: str, r: str) -> bool:
        """`a` starts within `pair_window` characters after an occurrence of `q` in `r`."""
        if not q or not a or len(q) + len(a) < self.rules.min_evidence:
            return False
        start = r.find(q)
        while start >= 0:
            end = start + len(q)
            if a in r[end:end + self.rules.pair_window + len(a)]:
                return True
            start = r.find(q, start + 1)
        return False

    def match(self, messages: str | list[str]) -> tuple[Item, float, list[str]] | None:
        """The item a conversation (its messages, or one text) leaks most of: (item, coverage of
        its main part, fields found), else None."""
        norms = [normalize(m) for m in ([messages] if isinstance(messages, str) else messages)]
        for m in norms:  # a short text that is a whole message (too short to look for inside one)
            if (idxs := self.whole.get(m)) is not None and self.rules.threshold <= 1.0:
                it = self.items[idxs[0]]
                return it, 1.0, [next(f for f, t, _ in it.texts if t == m) + " (whole message)"]
        r, n = "".join(norms), self.rules.n
        grams = {r[i:i + n] for i in range(len(r) - n + 1)}
        cands = {i for g in grams & self.anchors.keys() for i in self.anchors[g]}  # set intersection in C
        cands.update(i for a, idxs in self.short.items() if a in r for i in idxs)
        if not cands:
            return None
        best = None
        for idx in sorted(cands):
            m = self.check(idx, r, grams)
            if m is not None and (best is None or m[0] > best[0]):
                best = (m[0], idx, m[1], m[2])
        return None if best is None else (self.items[best[1]], best[2], best[3])


_INDEX: EvalIndex | None = None  # the workers' copy (forked)


def _match_record(conv) -> tuple:
    hit = _INDEX.match([m["content"] for m in conv.messages])
    line = json.dumps(conv.to_record(), ensure_ascii=False) if hit is None else None
    return conv.id, conv.source, line, hit


def decontam_file(src: str | Path, dst: str | Path, index: EvalIndex, *, threshold: float | None = None,
                  report: str | Path | None = None, too_short: str | Path | None = None, on_error: str = "skip",
                  progress: bool = True, workers: int = 1) -> dict[str, Any]:
    """Write `src` without records that contain an eval item to `dst` (atomically); returns a summary.

    `report` (JSONL) says for every removed record which eval item (file, line, the fields
    found, the start of its text) it contains; `too_short` (JSONL) lists the eval items too
    short to index. `threshold`, if given, replaces the index's for this run. `workers`
    processes share the matching.
    """
    import copy
    import dataclasses

    from tqdm import tqdm


    global _INDEX
    if threshold is not None:  # the anchors do not depend on it: share them
        index = copy.copy(index)
        index.rules = dataclasses.replace(index.rules, threshold=threshold)
    _INDEX = index
    read = fingerprint(src)  # lineage: what was read (the data card follows it)
    errors = error_sink(on_error)
    kept = 0
    removed: list[dict] = []
    by_file: Counter = Counter()
    with atomic_writer(dst) as f:
        for key, source, line, hit in tqdm(map_records(src, _match_record, errors, workers=workers),
                                           desc="decontam", unit="rec", disable=not progress):
            if hit is None:
                f.write(line + "\n")
                kept += 1
                continue
            item, cov, fields = hit
            by_file[Path(item.file).name] += 1
            removed.append({"_id": key, "source": source, "reason": "eval-overlap", "coverage": round(cov, 4),
                            "eval_file": item.file, "eval_line": item.line, "eval_field": "+".join(fields),
                            "eval_text": item.preview})
    if report:
        with atomic_writer(report) as f:
            for r in removed:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    if too_short:
        with atomic_writer(too_short) as f:
            for r in index.too_short:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    short_by_file = Counter(Path(r["eval_file"]).name for r in index.too_short if not r["part"])
    return stamp({"step": "decontam", "input": str(src), "output": str(dst), "kept": kept, "removed": len(removed),
            "removed_by_eval_file": dict(by_file), "rules": vars(index.rules),
            "eval_items": len(index.items), "eval_files": len(index.files),
            "eval_files_by_shape": dict(Counter(index.shapes.values())),
            "too_short": sum(short_by_file.values()), "too_short_by_eval_file": dict(short_by_file),
            "too_short_parts": sum(r["part"] for r in index.too_short),
            "too_short_report": str(too_short) if too_short else None,
            "bad_records": len(errors or []), "errors": [str(e) for e in (errors or [])[:20]],
            "report": str(report) if report else None}, [read], dst)


def default_eval_paths(shared: str | Path) -> list[Path]:
    """The evaluation sets under a shared-data folder laid out like ../shared/data."""
    shared = Path(shared)
    candidates = [shared / "disc-medllm" / "eval" / "samples", shared / "cmb", shared / "cmmlu"]
    return [p for p in candidates if p.exists()]
