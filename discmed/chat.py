"""Messages and conversations, and the two on-disk shapes they travel in.

A message is an OpenAI-style dict, `{"role": "user"|"assistant"|"system", "content": str}`.
On disk discmed reads and writes DISC-Med-SFT JSONL,

    {"_id": "...", "source": "...", "conversation": [{"role": "user", "content": "..."}, ...]}

and also accepts OpenAI-style lines (`{"messages": [...]}`). The reader streams: a 470k-line
file is read line by line, never held whole. Every validation error names the file, the line
and the field, so a user can open the file at the right place.

Files are UTF-8, with or without a byte-order mark. A line that is not UTF-8 (a GBK export, a
damaged byte) is a bad record like any other: a `DataError` naming file:line and what the
bytes look like, skipped or fatal as the caller asks, never a bare codec error for the whole file.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, TypeVar

from discmed.errors import DiscmedError

ROLES = ("system", "user", "assistant")
T = TypeVar("T")


class Message(TypedDict):
    role: str
    content: str


class DataError(DiscmedError, ValueError):
    """A bad record: `path:line: field: message`."""

    def __init__(self, path: str | os.PathLike | None, line: int | None, field: str, message: str):
        self.path = str(path) if path is not None else "<input>"
        self.line = line
        self.field = field
        self.message = message
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {field}: {message}")


def error_sink(on_error: str) -> list[DataError] | None:
    """What `on_error` asks for: `skip` → a list that collects bad records (the run goes on),
    `stop` → None (the first bad record raises). Anything else is refused, never taken for stop."""
    if on_error not in ("skip", "stop"):
        raise ValueError(f"on_error: expected skip or stop, got {on_error!r}")
    return [] if on_error == "skip" else None


@dataclass
class Conversation:
    """One consultation: an id, where it came from, its messages, and anything else on the line."""

    id: str
    source: str
    messages: list[Message]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The DISC-Med-SFT record for this conversation (extra keys kept after the standard ones)."""
        record: dict[str, Any] = {"_id": self.id, "source": self.source, "conversation": list(self.messages)}
        record.update(self.extra)
        return record


def validate_messages(
    messages: Any,
    *,
    path: str | os.PathLike | None = None,
    line: int | None = None,
    field_name: str = "conversation",
    require_assistant: bool = True,
) -> list[Message]:
    """Check a message list and return it as clean `Message` dicts, or raise `DataError`.

    Rules: a non-empty list; each item a dict with a known `role` and non-empty string
    `content`; system messages only at the start; after them, user and assistant alternate
    starting with the user. With `require_assistant`, at least one assistant turn (a training
    record with none teaches nothing).
    """

    def fail(where: str, message: str) -> DataError:
        return DataError(path, line, where, message)

    if not isinstance(messages, list):
        raise fail(field_name, f"expected a list of messages, got {type(messages).__name__}")
    if not messages:
        raise fail(field_name, "no messages")
    clean: list[Message] = []
    previous = None
    for i, msg in enumerate(messages):
        where = f"{field_name}[{i}]"
        if not isinstance(msg, dict):
            raise fail(where, f"expected an object with role and content, got {type(msg).__name__}")
        role = msg.get("role")
        if role not in ROLES:
            raise fail(f"{where}.role", f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
        content = msg.get("content")
        if not isinstance(content, str):
            raise fail(f"{where}.content", f"expected a string, got {type(content).__name__}")
        if not content.strip():
            raise fail(f"{where}.content", "empty content")
        if role == "system":
            if previous not in (None, "system"):
                raise fail(f"{where}.role", "a system message may only come before the first user turn")
        elif role == "user":
            if previous == "user":
                raise fail(f"{where}.role", "two user turns in a row")
        elif previous in (None, "system"):
            raise fail(f"{where}.role", "the conversation must start with a user turn, not an assistant turn")
        elif previous == "assistant":
            raise fail(f"{where}.role", "two assistant turns in a row")
        clean.append({"role": role, "content": content})
        previous = role
    if previous == "system":
        raise fail(field_name, "only system messages, no user turn")
    if require_assistant and not any(m["role"] == "assistant" for m in clean):
        raise fail(field_name, "no assistant turn (a training record needs at least one)")
    return clean


def parse_record(
    obj: Any,
    *,
    path: str | os.PathLike | None = None,
    line: int | None = None,
    require_assistant: bool = True,
) -> Conversation:
    """One decoded JSON line (DISC-Med-SFT or OpenAI `messages`) → `Conversation`."""
    if not isinstance(obj, dict):
        raise DataError(path, line, "record", f"expected a JSON object, got {type(obj).__name__}")
    if "conversation" in obj:
        key = "conversation"
    elif "messages" in obj:
        key = "messages"
    else:
        raise DataError(path, line, "conversation", "missing (expected 'conversation' or 'messages')")
    messages = validate_messages(
        obj[key], path=path, line=line, field_name=key, require_assistant=require_assistant
    )
    raw_id = obj.get("_id", obj.get("id"))
    conv_id = str(raw_id) if raw_id is not None else f"{Path(str(path or 'input')).stem}-{line}"
    source = obj.get("source", "")
    if not isinstance(source, str):
        raise DataError(path, line, "source", f"expected a string, got {type(source).__name__}")
    extra = {k: v for k, v in obj.items() if k not in ("_id", "id", "source", key)}
    return Conversation(conv_id, source, messages, extra)


def _encoding_hint(raw: bytes) -> str:
    """What bytes that are not UTF-8 look like, for the error message."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return " (looks like UTF-16: save the file as UTF-8)"
    try:
        if re.search("[\u4e00-\u9fff]", raw.decode("gb18030")):
            return " (looks like GBK/GB18030: convert it, e.g. iconv -f GB18030 -t UTF-8)"
    except UnicodeDecodeError:
        pass
    return ""


def decode_line(raw: bytes, path: str | os.PathLike | None, line: int) -> str:
    """One line of a UTF-8 file as text (a byte-order mark on line 1 dropped); a line that is
    not UTF-8 is a `DataError` naming the file, the line and the byte."""
    if line == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, line, "encoding", f"not UTF-8: byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the "
                                               f"line{_encoding_hint(raw)}") from None


def iter_lines(path: str | os.PathLike, errors: list[DataError] | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file; a line that is not UTF-8 follows
    `errors` (raised with None, collected and skipped with a list)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, decode_line(raw, path, lineno)
            except DataError as e:
                if errors is None:
                    raise
                errors.append(e)


def iter_jsonl(
    path: str | os.PathLike,
    parse: Callable[[Any, int], T],
    errors: list[DataError] | None = None,
) -> Iterator[T]:
    """Stream `parse(obj, line)` over the JSON lines of a file, blank lines skipped.

    Invalid JSON, a line that is not UTF-8 and any `DataError` that `parse` raises name the
    file and line. With `errors=None` the first one is raised; with a list, bad lines are
    skipped and collected so the caller can report them all at the end.
    """
    for lineno, text in iter_lines(path, errors):
        if not text.strip():
            continue
        try:
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(path, lineno, "json", f"invalid JSON ({e.msg} at column {e.colno})") from None
            yield parse(obj, lineno)
        except DataError as e:
            if errors is None:
                raise
            errors.append(e)


def iter_json_records(path: str | Path, errors: list[DataError] | None = None) -> Iterator[tuple[int, Any]]:
    """(line, object) for each element of a JSON array, or each line of a JSONL file."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4096).removeprefix(codecs.BOM_UTF8).lstrip()
    if not head.startswith(b"["):
        yield from iter_jsonl(path, lambda obj, line: (line, obj), errors)
        return
    raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        # Inside an array there is no safe place to resume: this is always fatal.
        start, end = raw.rfind(b"\n", 0, e.start) + 1, raw.find(b"\n", e.start)
        decode_line(raw[start:end if end >= 0 else len(raw)], path, raw.count(b"\n", 0, e.start) + 1)  # raises
        raise  # pragma: no cover - decode_line raised for this very byte
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    line = 1 + text.count("\n", 0, pos)
    ws = re.compile(r"[\s,]*")
    while True:
        m = ws.match(text, pos)
        line += text.count("\n", pos, m.end())
        pos = m.end()
        if pos >= len(text):
            raise DataError(path, line, "json", "the JSON array is not closed (truncated file?)")
        if text[pos] == "]":
            return
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            # Inside an array there is no safe place to resume: this is always fatal.
            raise DataError(path, e.lineno, "json", f"invalid JSON ({e.msg} at column {e.colno})") from None
        yield line, obj
        line += text.count("\n", pos, end)
        pos = end


def iter_conversations(
    path: str | os.PathLike,
    errors: list[DataError] | None = None,
    *,
    require_assistant: bool = True,
) -> Iterator[Conversation]:
    """Stream conversations from a JSONL file (DISC-Med-SFT or OpenAI `messages` lines).

    With `errors=None` the first bad record raises `DataError`; with a list, bad records are
    skipped and appended to it, so the caller can report them all at the end.
    """
    return iter_jsonl(
        path, lambda obj, line: parse_record(obj, path=path, line=line, require_assistant=require_assistant), errors
    )


def read_conversations(path: str | os.PathLike, **kw: Any) -> list[Conversation]:
    """All conversations of a (small) file; raises on the first bad record."""
    return list(iter_conversations(path, **kw))


def atomic_writer(path: str | os.PathLike, mode: str = "w"):
    """Open a temp file beside `path`; `os.replace` it into place on a clean close."""
    return _AtomicFile(Path(path), mode)


class _AtomicFile:
    def __init__(self, path: Path, mode: str):
        self.path, self.mode = path, mode

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        self.f = os.fdopen(fd, self.mode, **({} if "b" in self.mode else {"encoding": "utf-8"}))
        return self.f

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.f.flush()
            os.fsync(self.f.fileno())  # the bytes are on disk before the name points at them
        self.f.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)
        return False


@contextmanager
def atomic_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Write a whole folder: yields a temp folder beside `out`, swapped into place on a clean
    exit (an old `out` replaced whole), removed on an error. Readers never see half a folder."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole text file atomically (a reader sees the old file or the new, never half)."""
    with atomic_writer(path) as f:
        f.write(text)


def write_jsonl(rows: Iterable[Any], path: str | os.PathLike) -> int:
    """Write JSON lines atomically; returns the number of lines."""
    n = 0
    with atomic_writer(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_json(path: str | os.PathLike) -> Any:
    """One JSON document; invalid JSON is a DataError naming the file, line and column."""
    raw = Path(path).read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        start, end = raw.rfind(b"\n", 0, e.start) + 1, raw.find(b"\n", e.start)
        decode_line(raw[start:end if end >= 0 else len(raw)], path, raw.count(b"\n", 0, e.start) + 1)  # raises
        raise  # pragma: no cover - decode_line raised for this very byte
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, "json", f"invalid JSON ({e.msg} at column {e.colno})") from None


def write_conversations(conversations: Iterable[Conversation], path: str | os.PathLike) -> int:
    """Write DISC-Med-SFT JSONL atomically; returns the number of records."""
    return write_jsonl((conv.to_record() for conv in conversations), path)


def write_messages_jsonl(conversations: Iterable[Conversation], path: str | os.PathLike) -> int:
    """Write OpenAI-style `{"messages": [...]}` JSONL atomically; returns the number of records."""
    return write_jsonl(({"id": conv.id, "messages": conv.messages} for conv in conversations), path)
