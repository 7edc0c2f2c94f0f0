"""Tool calls in the chat formats' own conventions: tools, assistant tool calls and tool results
rendered into a prompt, and the calls read back out of a reply.

A convention is how a family of models was trained to see tools and to call them:

- `hermes`, the chatml one (Qwen2.5, Hermes): the tools as JSON lines in `<tools></tools>` in the
  system turn, a call as `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` in the
  assistant turn, results as `<tool_response>\\n...\\n</tool_response>` in one user turn, as
  Qwen2.5's chat template renders them (without its "You are Qwen" identity line, which is
  Qwen's own and not chatml's);
- `llama3_json`, the llama3 one (Llama 3.1's JSON tool calling): "Environment: ipython" in the
  system turn, the tools as indented JSON with Llama's instruction before the first user message,
  a call as `{"name": ..., "parameters": {...}}` alone in the assistant turn, each result in an
  `ipython` turn, as Llama 3.1's template does by default (without its date lines, which
  discmed's llama3 format never writes); one call per assistant turn, as that template allows;
- `auto` (the tokenizer's own chat template) renders them itself through `tools=` when the
  template takes tools; its calls are read by the convention the template shows (`<tool_call>`:
  hermes, an `ipython` role: llama3_json);
- `disc` has none: DISC-MedLLM was never trained to call tools.

Rendering goes through the format's own pieces (`discmed.formats`), so a turn that carries a
tool call is tokenized exactly as any other turn of that format. Reading a reply is done by a
`CallStream`, the same object for a whole reply and for a stream of deltas, so the two agree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from discmed.formats import ChatMLFormat, Llama3Format, TemplateFormat, _markup

HERMES, LLAMA3 = "hermes", "llama3_json"

HERMES_TOOLS = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)
LLAMA3_TOOLS = (
    "Given the following functions, please respond with a JSON for a function call with its proper "
    "arguments that best answers the given prompt.\n\n"
    'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.'
    "Do not use variables.\n\n"
)


class ToolFormatError(ValueError):
    """A conversation a convention cannot render; `where` names the message field."""

    def __init__(self, message: str, where: str):
        super().__init__(message)
        self.where = where


def convention(fmt: Any, tokenizer: Any) -> str | None:
    """The tool-call convention of a chat format (None: it has none)."""
    if isinstance(fmt, ChatMLFormat):
        return HERMES
    if isinstance(fmt, Llama3Format):
        return LLAMA3
    if isinstance(fmt, TemplateFormat):
        template = str(getattr(tokenizer, "chat_template", None) or "")
        if "tools" not in template:
            return None
        if "<tool_call>" in template:
            return HERMES
        if "ipython" in template:
            return LLAMA3
    return None


def _tojson(value: Any, indent: int | None = None) -> str:
    # What a chat template's `tojson` writes (transformers: ensure_ascii off, default separators).
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _turns(fmt: Any, messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """The conversation as the format's plain turns (role, content), in its convention.

    `messages` are checked and normalized: {"role", "content": str, "tool_calls": [{"id",
    "name", "arguments": a JSON value}] (assistant), "tool_call_id" (tool)}."""
    llama = isinstance(fmt, Llama3Format)
    turns: list[dict] = []
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = messages[len(system) :]
    if tools and not llama:
        block = HERMES_TOOLS.format(tools="".join("\n" + _tojson(t) for t in tools))
        turns.append({"role": "system", "content": (system[0] + "\n\n" if system else "") + block})
        turns += [{"role": "system", "content": s} for s in system[1:]]
    elif tools:
        turns.append({"role": "system", "content": "Environment: ipython" + "".join("\n\n" + s for s in system)})
    else:
        turns += [{"role": "system", "content": s} for s in system]
    first_user = True
    for i, m in enumerate(rest, start=len(system)):
        role, content, calls = m["role"], m.get("content") or "", m.get("tool_calls") or []
        if role == "user" and tools and llama and first_user:
            content = LLAMA3_TOOLS + "".join(_tojson(t, indent=4) + "\n\n" for t in tools) + content
        first_user = first_user and role != "user"
        if role == "assistant" and calls:
            if llama:
                if len(calls) > 1:
                    raise ToolFormatError("format 'llama3' takes one tool call per assistant message "
                                          "(Llama 3.1's convention)", f"{i}.tool_calls")  # fmt: skip
                c = calls[0]
                content = '{"name": "' + c["name"] + '", "parameters": ' + _tojson(c["arguments"]) + "}"
            else:
                head = content + "\n" if content else ""
                content = head + "\n".join('<tool_call>\n{"name": "' + c["name"] + '", "arguments": '
                                           + _tojson(c["arguments"]) + "}\n</tool_call>" for c in calls)  # fmt: skip
        if role == "tool":
            if llama:
                turns.append({"role": "ipython", "content": content})
                continue
            response = f"<tool_response>\n{content}\n</tool_response>"
            if turns and turns[-1].get("tool_results"):  # consecutive results share one user turn
                turns[-1]["content"] += "\n" + response
            else:
                turns.append({"role": "user", "content": response, "tool_results": True})
            continue
        turns.append({"role": role, "content": content})
    return turns


def render(fmt: Any, tokenizer: Any, messages: list[dict], tools: list[dict] | None,
           template_kwargs: dict | None = None) -> list[int]:  # fmt: skip
    """The generation prompt of a conversation with tools and tool messages, untruncated.

    `tools` (OpenAI's tool objects) are shown to the model in the format's convention; None
    shows none (the history's calls and results are still rendered)."""
    if isinstance(fmt, TemplateFormat):
        # The template renders everything itself, as transformers and vLLM hand it over: a call's
        # arguments as a mapping, results as `tool` messages.
        msgs = []
        for m in messages:
            out = {"role": m["role"], "content": m.get("content")}
            if m.get("tool_calls"):
                out["tool_calls"] = [{"id": c["id"], "type": "function",
                                      "function": {"name": c["name"], "arguments": c["arguments"]}}
                                     for c in m["tool_calls"]]  # fmt: skip
            if m["role"] == "tool":
                out["tool_call_id"] = m["tool_call_id"]
            msgs.append(out)
        text = fmt._render(tokenizer, msgs, generation=True, tools=tools or None, **(template_kwargs or {}))
        return _markup(tokenizer, text)
    if convention(fmt, tokenizer) is None:
        raise ToolFormatError(f"format {fmt.name!r} has no tool-call convention", "")
    ids = list(fmt.prefix(tokenizer))
    for turn in _turns(fmt, messages, tools):
        ids += fmt.piece({"role": turn["role"], "content": turn["content"]}, tokenizer)[0]
    return ids + fmt.generation_start(tokenizer)


# -- reading calls out of a reply --------------------------------------------------------------
#
# Events, in the order a stream sends them: ("content", text), ("call", index, name) opens call
# `index`, ("args", index, text) is a fragment of its arguments (JSON text).


@dataclass
class CallStream:
    """Reads a reply's text as content and tool calls: `start()`, then `feed(text)` per piece,
    then `finish(complete)` (complete: the reply ended on its own, not at max_tokens); each
    returns the events to send now. `calls` counts the calls opened."""

    calls: int = 0

    def start(self) -> list[tuple]:
        return []

    def feed(self, text: str) -> list[tuple]:
        raise NotImplementedError

    def finish(self, complete: bool) -> list[tuple]:
        return []

    def _call(self, name: str, arguments: str | None = None) -> list[tuple]:
        self.calls += 1
        out: list[tuple] = [("call", self.calls - 1, name)]
        if arguments:
            out.append(("args", self.calls - 1, arguments))
        return out


@dataclass
class NamedCall(CallStream):
    """tool_choice names the function: the reply is its arguments (constrained to its schema)."""

    name: str = ""

    def start(self) -> list[tuple]:
        return self._call(self.name)

    def feed(self, text: str) -> list[tuple]:
        return [("args", 0, text)] if text else []


_REQUIRED_HEAD = re.compile(r'^\{"name":"([A-Za-z0-9_-]+)","arguments":')


@dataclass
class RequiredCall(CallStream):
    """tool_choice "required": the reply is `{"name":"F","arguments":{...}}`, constrained to a
    choice between the tools, with no free whitespace (discmed.structured), so the head is
    exact. The arguments stream as they come, less the closing brace of the wrapper."""

    text: str = ""
    sent: int = 0  # characters of text already sent as arguments
    head: int = 0  # length of the head once read

    def feed(self, text: str) -> list[tuple]:
        self.text += text
        out: list[tuple] = []
        if not self.head:
            m = _REQUIRED_HEAD.match(self.text)
            if m is None:
                return []
            self.head = self.sent = m.end()
            out += self._call(m.group(1))
        end = len(self.text) - 1  # the last character may be the wrapper's closing brace
        if end > self.sent:
            out.append(("args", 0, self.text[self.sent : end]))
            self.sent = end
        return out

    def finish(self, complete: bool) -> list[tuple]:
        if not self.head:  # cut off before the name was written: what there is, as content
            return [("content", self.text)] if self.text else []
        end = len(self.text) - 1 if complete and self.text.endswith("}") else len(self.text)
        rest, self.sent = self.text[self.sent : end], end
        return [("args", 0, rest)] if rest else []


def _longest_prefix_held(text: str, marker: str) -> int:
    """How many trailing characters of `text` might be the start of `marker`."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-k:]):
            return k
    return 0


def _arguments(value: Any) -> str | None:
    """A call's arguments as JSON text (an object, or a JSON string holding one); None if not."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
    return _tojson(value) if isinstance(value, dict) else None


@dataclass
class HermesCalls(CallStream):
    """tool_choice "auto" in the hermes convention: content streams until `<tool_call>`; the
    calls after it are read whole at the end (a call that does not parse, or names no tool of
    the request, leaves the whole reply as content, as vLLM's parser does)."""

    names: frozenset[str] = frozenset()
    single: bool = False  # parallel_tool_calls false: the first call only
    text: str = ""
    sent: int = 0
    in_calls: bool = False
    MARK = "<tool_call>"
    BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)$", re.DOTALL)

    def feed(self, text: str) -> list[tuple]:
        self.text += text
        if self.in_calls:
            return []
        at = self.text.find(self.MARK, self.sent)
        if at >= 0:
            self.in_calls = True
            end = at
        else:
            end = len(self.text) - _longest_prefix_held(self.text, self.MARK)
        out = [("content", self.text[self.sent : end])] if end > self.sent else []
        self.sent = max(self.sent, end)
        return out

    def finish(self, complete: bool) -> list[tuple]:
        rest = self.text[self.sent :]
        if not self.in_calls:
            return [("content", rest)] if rest else []
        calls = []
        for m in self.BLOCK.finditer(rest):
            try:
                obj = json.loads((m.group(1) or m.group(2) or "").strip())
            except (ValueError, RecursionError):
                return [("content", rest)]
            args = _arguments(obj.get("arguments", {})) if isinstance(obj, dict) else None
            if args is None or obj.get("name") not in self.names:
                return [("content", rest)]
            calls.append((obj["name"], args))
        return [e for name, args in calls[: 1 if self.single else None] for e in self._call(name, args)]


@dataclass
class Llama3Calls(CallStream):
    """tool_choice "auto" in Llama 3.1's JSON convention: a reply that starts with `{` is read
    at the end as calls (`{"name", "parameters"}` objects, `;`-separated as vLLM reads them);
    any other reply streams as content."""

    names: frozenset[str] = frozenset()
    single: bool = False  # parallel_tool_calls false: the first call only
    text: str = ""
    mode: str = ""  # "" undecided (only whitespace so far), "content", "calls"
    TAG = "<|python_tag|>"

    def feed(self, text: str) -> list[tuple]:
        self.text += text
        if self.mode == "content":
            return [("content", text)] if text else []
        if self.mode == "calls":
            return []
        body = self.text.lstrip()
        if not body or (len(body) < len(self.TAG) and self.TAG.startswith(body)):
            return []  # whitespace, or what may still become the tag: undecided
        self.mode = "calls" if body.startswith(("{", self.TAG)) else "content"
        return [("content", self.text)] if self.mode == "content" else []

    def finish(self, complete: bool) -> list[tuple]:
        if self.mode != "calls":
            return [("content", self.text)] if self.mode == "" and self.text else []
        body = self.text.strip().removeprefix(self.TAG).lstrip()
        decoder, i, calls = json.JSONDecoder(), 0, []
        try:
            while i < len(body):
                obj, i = decoder.raw_decode(body, i)
                while i < len(body) and body[i] in " \n\t;":
                    i += 1
                args = _arguments(obj.get("parameters", obj.get("arguments", {}))) if isinstance(obj, dict) else None
                if args is None or obj.get("name") not in self.names:
                    return [("content", self.text)]
                calls.append((obj["name"], args))
        except (ValueError, RecursionError):
            return [("content", self.text)]
        return [e for name, args in calls[: 1 if self.single else None] for e in self._call(name, args)]


@dataclass
class Reading:
    """A whole reply read by a CallStream: its content and calls [(name, arguments)]."""

    content: str = ""
    calls: list[list[str]] = field(default_factory=list)


def read(stream: CallStream, text: str, complete: bool) -> Reading:
    """A whole reply through `stream`, as a stream would have sent it."""
    out = Reading()
    for event in stream.start() + stream.feed(text) + stream.finish(complete):
        if event[0] == "content":
            out.content += event[1]
        elif event[0] == "call":
            out.calls.append([event[2], ""])
        else:
            out.calls[event[1]][1] += event[2]
    return out


def call_stream(conv: str, names: list[str], single: bool = False) -> CallStream:
    """The reader of an `auto` reply in convention `conv` (`single`: keep its first call only)."""
    kind = HermesCalls if conv == HERMES else Llama3Calls
    return kind(names=frozenset(names), single=single)
