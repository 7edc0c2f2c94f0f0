"""Source loaders: the public datasets DISC-Med-SFT was built from → DISC-Med-SFT conversations.

    kind             what                                                    path
    meddialog-txt    MedDialog-CN raw per-year .txt (id= / URL / Doctor faculty / Description / Dialogue)   a .txt
    meddialog-json   MedDialog-CN preprocessed: a JSON list of dialogues, each a list of "病人：…"/"医生：…"   a .json
    cmedqa2          cMedQA2 question.csv + answer.csv (one conversation per question, its first answer)   the folder
    medmcqa          MedMCQA JSONL {"question","opa".."opd","cop",…}; cop 1-based (original) or 0-based (HF)   a .json/.jsonl
    moss             MOSS-003-SFT style {"chat": {"turn_1": {"Human": "<|Human|>: …<eoh>", "MOSS": …}}}    JSONL or JSON list
    alpaca           Alpaca-GPT4-zh style {"instruction","input","output"}                                 JSONL or JSON list
    disc             any DISC-Med-SFT (or OpenAI messages) JSONL                                           a .jsonl
    cmekg            CMeKG {"text", "spo_list": [[subject, predicate, object], …]} → triples for kgqa       a .json

Every loader streams `Conversation`s and takes `errors`: None stops at the first malformed
record with a `DataError` naming file, line and field; a list collects them and skips the
record. JSON arrays are walked element by element with their line numbers, so an error in the
50,000th dialogue of a 300 MB file still says which line to open.

    summary = load_to_jsonl("cmedqa2", ["data/cMedQA2"], "out/cmedqa2.jsonl", on_error="skip")
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from discmed.chat import (  # noqa: F401  (iter_json_records: read here, and imported from here)
    Conversation,
    DataError,
    atomic_writer,
    decode_line,
    error_sink,
    iter_conversations,
    iter_json_records,
    parse_record,
    validate_messages,
)
from discmed.data.lineage import fingerprint, stamp

# ---------------------------------------------------------------- source names

# One name per source, everywhere (load writes it, mix groups by it, the card counts by it):
# the names of DISC-MedLLM's paper (table 1), which discmed's loaders write.
SOURCES = ("MedDialog", "cMedQA2", "CMeKG", "behavior", "MedMCQA", "MOSS-SFT", "Alpaca-GPT4-zh")
# Names seen in the wild (DISC's own release says "meddial") → the canonical ones.
ALIASES = {"meddial": "MedDialog", "meddialog": "MedDialog", "cmedqa": "cMedQA2", "cmedqa2": "cMedQA2",
           "cmekg": "CMeKG", "kgqa": "CMeKG", "behavior": "behavior", "behaviour": "behavior", "curated": "behavior",
           "medmcqa": "MedMCQA", "moss": "MOSS-SFT", "mosssft": "MOSS-SFT", "alpaca": "Alpaca-GPT4-zh",
           "alpacagpt4zh": "Alpaca-GPT4-zh"}


def canonical_source(source: str) -> str:
    """The canonical name of a source (meddial, MedDialog, med-dialog → MedDialog); other names as they are."""
    key = re.sub(r"[^a-z0-9]", "", source.lower())
    return ALIASES.get(key, source)


# ---------------------------------------------------------------- JSON helpers


def _fail(errors: list[DataError] | None, err: DataError) -> None:
    if errors is None:
        raise err
    errors.append(err)


def _conv(path, line, conv_id, source, messages, errors, extra=None) -> Conversation | None:
    """Validate `messages` into a Conversation, or report and return None."""
    try:
        clean = validate_messages(messages, path=path, line=line)
    except DataError as e:
        _fail(errors, e)
        return None
    return Conversation(conv_id, source, clean, extra or {})


def _merge_turns(turns: list[tuple[str, str]]) -> list[dict]:
    """Consecutive turns of one role become one message (patients often send several in a row)."""
    out: list[dict] = []
    for role, text in turns:
        text = text.strip()
        if not text:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"] += "\n" + text
        else:
            out.append({"role": role, "content": text})
    # A consultation that the doctor opened is cut to start at the patient's first word.
    while out and out[0]["role"] == "assistant":
        out.pop(0)
    while out and out[-1]["role"] == "user":
        out.pop()
    return out


SPEAKER = {"病人": "user", "患者": "user", "医生": "assistant"}
# A turn may run over several lines ("医生：你好\n1. 多喝水\n2. …"): the text is everything after the colon.
RE_SPEAKER = re.compile(r"^(病人|患者|医生)[：:]\s*(.*)\Z", re.S)

# ---------------------------------------------------------------- MedDialog-CN


def load_meddialog_txt(path: str | Path, errors: list[DataError] | None = None) -> Iterator[Conversation]:
    """MedDialog-CN raw text: blocks starting `id=N`, with Description and Dialogue sections."""
    path = Path(path)
    block: list[tuple[int, str]] = []

    def flush() -> Conversation | None:
        if not block:
            return None
        start, first = block[0]
        conv_id = first.split("=", 1)[1].strip()
        url = block[1][1].strip() if len(block) > 1 and block[1][1].startswith("http") else ""
        section, faculty, desc, turns = None, [], [], []
        speaker_line = None
        for lineno, line in block[1:]:
            s = line.strip()
            if s in ("Doctor faculty", "Description", "Dialogue"):
                section = s
                continue
            if not s:
                continue
            if section == "Doctor faculty":
                faculty.append(s)
            elif section == "Description":
                desc.append(s)
            elif section == "Dialogue":
                m = RE_SPEAKER.match(s)
                if m:
                    turns.append((SPEAKER[m.group(1)], m.group(2)))
                    speaker_line = lineno
                elif turns:
                    turns[-1] = (turns[-1][0], turns[-1][1] + ("\n" if turns[-1][1] else "") + s)
                else:
                    _fail(errors, DataError(path, lineno, "Dialogue", f"line does not start with 病人： or 医生： ({s[:30]!r})"))
                    return None
        if section != "Dialogue" or not turns:
            _fail(errors, DataError(path, start, "Dialogue", f"dialogue id={conv_id} has no Dialogue section or no turns"))
            return None
        # The description (疾病 / 病情描述 / 希望获得的帮助) is what the patient wrote first.
        description = "\n".join(desc).replace("：\n", "：")
        if description:
            turns.insert(0, ("user", description))
        messages = _merge_turns(turns)
        extra = {"department": " ".join(faculty), "url": url}
        return _conv(path, speaker_line or start, f"meddialog-{conv_id}", "MedDialog", messages, errors, extra)

    bad_block = False  # a line of this dialogue was not UTF-8 (reported): the dialogue is skipped
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = decode_line(raw, path, lineno).rstrip("\r\n")
            except DataError as e:
                _fail(errors, e)
                bad_block = True
                continue
            if line.startswith("id="):
                conv = None if bad_block else flush()
                if conv:
                    yield conv
                block, bad_block = [], False
            if block or line.startswith("id="):
                block.append((lineno, line))
            elif line.strip():
                _fail(errors, DataError(path, lineno, "id", "text before the first 'id=' line"))
    conv = None if bad_block else flush()
    if conv:
        yield conv


def load_meddialog_json(path: str | Path, errors: list[DataError] | None = None) -> Iterator[Conversation]:
    """MedDialog-CN preprocessed JSON: a list of dialogues, each a list of '病人：…' / '医生：…'."""
    for i, (line, dialogue) in enumerate(iter_json_records(path, errors)):
        if not isinstance(dialogue, list):
            _fail(errors, DataError(path, line, f"[{i}]", f"expected a list of utterances, got {type(dialogue).__name__}"))
            continue
        turns = []
        for j, utt in enumerate(dialogue):
            m = RE_SPEAKER.match(utt.strip()) if isinstance(utt, str) else None
            if not m:
                _fail(errors, DataError(path, line, f"[{i}][{j}]", "expected a string starting with 病人： or 医生："))
                turns = None
                break
            turns.append((SPEAKER[m.group(1)], m.group(2)))
        if turns is None:
            continue
        conv = _conv(path, line, f"meddialog-{Path(path).stem}-{i}", "MedDialog", _merge_turns(turns), errors)
        if conv:
            yield conv


# ---------------------------------------------------------------- cMedQA2


def _csv_rows(path: Path, required: tuple[str, ...], errors) -> Iterator[tuple[int, dict]]:
    undecodable: list[int] = []  # physical lines that were not UTF-8 (reported; their rows skipped)

    def lines() -> Iterator[str]:
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    yield decode_line(raw, path, lineno)
                except DataError as e:
                    _fail(errors, e)
                    undecodable.append(lineno)
                    yield raw.decode("utf-8", "replace")  # keeps the CSV's quoting in step; the row is dropped

    reader = csv.DictReader(lines())
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(path, 1, missing[0], f"missing column (header has {reader.fieldnames})")
    first = reader.line_num + 1
    for row in reader:
        line = reader.line_num
        row_lines, first = (first, line), line + 1
        if undecodable and row_lines[0] <= undecodable[-1] <= row_lines[1]:
            continue
        bad = next((c for c in required if not (row.get(c) or "").strip()), None)
        if bad:
            _fail(errors, DataError(path, line, bad, "empty"))
            continue
        yield line, row


def load_cmedqa2(path: str | Path, errors: list[DataError] | None = None, all_answers: bool = False) -> Iterator[Conversation]:
    """cMedQA2: a folder with question.csv (question_id,content) and answer.csv (ans_id,question_id,content)."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    questions = {row["question_id"].strip(): row["content"].strip()
                 for _, row in _csv_rows(folder / "question.csv", ("question_id", "content"), errors)}
    used: set[str] = set()
    answers = folder / "answer.csv"
    for line, row in _csv_rows(answers, ("ans_id", "question_id", "content"), errors):
        qid = row["question_id"].strip()
        if qid not in questions:
            _fail(errors, DataError(answers, line, "question_id", f"{qid!r} is not in question.csv"))
            continue
        if qid in used and not all_answers:
            continue
        used.add(qid)
        conv_id = f"cmedqa2-{qid}" + (f"-{row['ans_id'].strip()}" if all_answers else "")
        messages = [{"role": "user", "content": questions[qid]}, {"role": "assistant", "content": row["content"].strip()}]
        conv = _conv(answers, line, conv_id, "cMedQA2", messages, errors, {"answer_id": row["ans_id"].strip()})
        if conv:
            yield conv


# ---------------------------------------------------------------- MedMCQA


def load_medmcqa(path: str | Path, errors: list[DataError] | None = None, cop_base: int = 1) -> Iterator[Conversation]:
    """MedMCQA: `cop` is 1-based in the original release (cop_base=1), 0-based in the HF copy (0)."""
    letters = "ABCD"
    for line, rec in iter_json_records(path, errors):
        if not isinstance(rec, dict):
            _fail(errors, DataError(path, line, "record", "expected an object"))
            continue
        bad = next((k for k in ("question", "opa", "opb", "opc", "opd") if not isinstance(rec.get(k), str) or not rec[k].strip()), None)
        if bad:
            _fail(errors, DataError(path, line, bad, "missing or not a non-empty string"))
            continue
        try:
            idx = int(rec.get("cop")) - cop_base
        except (TypeError, ValueError):
            _fail(errors, DataError(path, line, "cop", f"expected an integer, got {rec.get('cop')!r}"))
            continue
        if not 0 <= idx < 4:
            _fail(errors, DataError(path, line, "cop", f"{rec.get('cop')!r} out of range for {cop_base}-based answers "
                                                       f"({cop_base}..{cop_base + 3}); is --cop-base right?"))
            continue
        options = [rec["opa"], rec["opb"], rec["opc"], rec["opd"]]
        prompt = rec["question"].strip() + "\n" + "\n".join(f"{letters[i]}. {o.strip()}" for i, o in enumerate(options))
        answer = f"The answer is {letters[idx]}. {options[idx].strip()}"
        if isinstance(rec.get("exp"), str) and rec["exp"].strip():
            answer += "\nExplanation: " + rec["exp"].strip()
        extra = {k: rec[k] for k in ("subject_name", "topic_name", "choice_type") if rec.get(k)}
        conv = _conv(path, line, f"medmcqa-{rec.get('id', line)}", "MedMCQA",
                     [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}], errors, extra)
        if conv:
            yield conv


# ---------------------------------------------------------------- instruction data

RE_MOSS_TAG = re.compile(r"^\s*<\|(?:Human|MOSS)\|>\s*[:：]\s*|\s*<(?:eoh|eom)>\s*$")


def load_moss(path: str | Path, errors: list[DataError] | None = None) -> Iterator[Conversation]:
    """MOSS-003-SFT style: {"conversation_id", "chat": {"turn_1": {"Human": …, "MOSS": …}, …}}."""
    for line, rec in iter_json_records(path, errors):
        chat = rec.get("chat") if isinstance(rec, dict) else None
        if not isinstance(chat, dict) or not chat:
            _fail(errors, DataError(path, line, "chat", "missing or not an object of turns"))
            continue
        messages, bad = [], None
        for name in sorted(chat, key=lambda k: int(re.sub(r"\D", "", k) or 0)):
            turn = chat[name]
            for field, role in (("Human", "user"), ("MOSS", "assistant")):
                text = turn.get(field) if isinstance(turn, dict) else None
                if not isinstance(text, str):
                    bad = f"chat.{name}.{field}"
                    break
                messages.append({"role": role, "content": RE_MOSS_TAG.sub("", text).strip()})
            if bad:
                break
        if bad:
            _fail(errors, DataError(path, line, bad, "missing or not a string"))
            continue
        conv = _conv(path, line, f"moss-{rec.get('conversation_id', line)}", "MOSS-SFT", messages, errors)
        if conv:
            yield conv


def load_alpaca(path: str | Path, errors: list[DataError] | None = None) -> Iterator[Conversation]:
    """Alpaca-GPT4-zh style: {"instruction", "input", "output"}."""
    for i, (line, rec) in enumerate(iter_json_records(path, errors)):
        if not isinstance(rec, dict):
            _fail(errors, DataError(path, line, "record", "expected an object"))
            continue
        bad = next((k for k in ("instruction", "output") if not isinstance(rec.get(k), str) or not rec[k].strip()), None)
        if bad:
            _fail(errors, DataError(path, line, bad, "missing or empty"))
            continue
        prompt = rec["instruction"].strip()
        if isinstance(rec.get("input"), str) and rec["input"].strip():
            prompt += "\n" + rec["input"].strip()
        conv = _conv(path, line, f"alpaca-{i}", "Alpaca-GPT4-zh",
                     [{"role": "user", "content": prompt}, {"role": "assistant", "content": rec["output"].strip()}], errors)
        if conv:
            yield conv


def load_disc(path: str | Path, errors: list[DataError] | None = None) -> Iterator[Conversation]:
    """Any DISC-Med-SFT (or OpenAI `messages`) JSONL."""
    yield from iter_conversations(path, errors)


# ---------------------------------------------------------------- CMeKG triples


def load_cmekg(path: str | Path, errors: list[DataError] | None = None) -> Iterator[tuple[str, str, str, int]]:
    """CMeKG `spo_list` records → (subject, predicate, object, line) triples, de-duplicated."""
    seen: set[tuple[str, str, str]] = set()
    for i, (line, rec) in enumerate(iter_json_records(path, errors)):
        spo = rec.get("spo_list") if isinstance(rec, dict) else None
        if not isinstance(spo, list):
            _fail(errors, DataError(path, line, f"[{i}].spo_list", "missing or not a list"))
            continue
        for j, t in enumerate(spo):
            if not (isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) and x.strip() for x in t)):
                _fail(errors, DataError(path, line, f"[{i}].spo_list[{j}]", "expected [subject, predicate, object] strings"))
                continue
            key = (t[0].strip(), t[1].strip(), t[2].strip())
            if key not in seen:
                seen.add(key)
                yield (*key, line)


LOADERS: dict[str, Callable[..., Iterator[Conversation]]] = {
    "meddialog-txt": load_meddialog_txt, "meddialog-json": load_meddialog_json, "cmedqa2": load_cmedqa2,
    "medmcqa": load_medmcqa, "moss": load_moss, "alpaca": load_alpaca, "disc": load_disc,
}


def load_to_jsonl(kind: str, paths: list[str | Path], out: str | Path, *, on_error: str = "skip",
                  limit: int | None = None, progress: bool = True, **options: Any) -> dict[str, Any]:
    """Load `paths` of one source kind into one DISC-Med-SFT JSONL (atomically); returns a summary.

    Loading is a pure function of its inputs, so resuming is re-running; `out` appears only
    when the run is complete. `on_error="skip"` reports bad records and goes on, "stop" raises.
    """
    from tqdm import tqdm

    if kind not in LOADERS:
        hint = " (CMeKG triples are read by `discmed data kgqa`)" if kind == "cmekg" else ""
        raise ValueError(f"unknown source kind {kind!r}: expected one of {', '.join(LOADERS)}{hint}")

    errors = error_sink(on_error)
    # What was read, fingerprinted before reading (cMedQA2: the two CSV files of its folder).
    inputs = [fingerprint(f) for p in paths
              for f in ([Path(p) / "question.csv", Path(p) / "answer.csv"] if Path(p).is_dir() else [p])]
    n, ids = 0, set()
    dup = 0
    renamed: dict[str, int] = {}
    with atomic_writer(out) as f, tqdm(desc=f"load {kind}", unit="rec", disable=not progress) as bar:
        for p in paths:
            for conv in LOADERS[kind](p, errors, **options):
                if conv.id in ids:  # ids must be unique downstream (journals key on them)
                    dup += 1
                    conv.id = f"{conv.id}~{dup}"
                ids.add(conv.id)
                name = canonical_source(conv.source)
                if name != conv.source:  # one name per source from here on (meddial → MedDialog)
                    key = f"{conv.source} → {name}"
                    renamed[key] = renamed.get(key, 0) + 1
                    conv.source = name
                f.write(json.dumps(conv.to_record(), ensure_ascii=False) + "\n")
                n += 1
                bar.update(1)
                if limit and n >= limit:
                    break
            if limit and n >= limit:
                break
    summary = {"step": "load", "kind": kind, "inputs": [str(p) for p in paths], "output": str(out), "records": n,
               "bad_records": len(errors or []), "renamed_duplicate_ids": dup, "renamed_sources": renamed,
               "limit": limit, "stopped_at_limit": bool(limit and n >= limit),
               "errors": [str(e) for e in (errors or [])[:20]]}
    return stamp(summary, inputs, out)


# ---------------------------------------------------------------- parallel record processing


def _map_chunk(fn: Callable, path: str, require_assistant: bool, many: bool, chunk: list[tuple[int, bytes]]) -> list:
    out: list = []
    good: list[tuple[int, Conversation]] = []  # (position in out, record) when `fn` takes a list
    for lineno, raw in chunk:
        try:
            text = decode_line(raw, path, lineno)  # a line that is not UTF-8 is one bad record
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(path, lineno, "json", f"invalid JSON ({e.msg} at column {e.colno})") from None
            conv = parse_record(obj, path=path, line=lineno, require_assistant=require_assistant)
            if many:
                good.append((len(out), conv))
                out.append(None)
            else:
                out.append(fn(conv))
        except DataError as e:  # sent back as fields: DataError's constructor does not unpickle
            out.append(_BadRecord((e.path, e.line, e.field, e.message)))
    if good:
        for (i, _), r in zip(good, fn([c for _, c in good]), strict=True):
            out[i] = r
    return out


class _BadRecord(tuple):
    """A bad record's (path, line, field, message), as a plain tuple subclass that pickles."""


def map_records(path: str | Path, fn: Callable[[Conversation], Any], errors: list[DataError] | None = None, *,
                workers: int = 1, chunk: int = 500, require_assistant: bool = True, many: bool = False) -> Iterator[Any]:
    """`fn(conversation)` for every record of a JSONL, in file order, over `workers` processes.

    The CPU steps (scrub, dedup signatures, decontam matching) are per-record work: with two
    cores, two processes halve the wall time. `fn` must be a module-level function (or a
    functools.partial of one); state it needs can be a module global set before the call, as
    the workers are forked. Bad records follow `errors` as in `iter_conversations`.
    `many=True`: `fn` takes a chunk's good records as a list and returns their results in
    order (scrub batches its NER over them).
    """
    import functools
    import multiprocessing as mp

    def chunks() -> Iterator[list[tuple[int, bytes]]]:
        buf: list[tuple[int, bytes]] = []
        with open(path, "rb") as f:  # bytes: each line is decoded where it is parsed (`decode_line`)
            for lineno, raw in enumerate(f, start=1):
                if raw.strip() and raw.strip() != codecs.BOM_UTF8:
                    buf.append((lineno, raw))
                if len(buf) >= chunk:
                    yield buf
                    buf = []
        if buf:
            yield buf

    work = functools.partial(_map_chunk, fn, str(path), require_assistant, many)
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(work, chunks()) if pool else map(work, chunks())
        for batch in results:
            for r in batch:
                if isinstance(r, _BadRecord):
                    err = DataError(*tuple(r))
                    if errors is None:
                        raise err
                    errors.append(err)
                else:
                    yield r
    finally:
        if pool:
            pool.terminate()
