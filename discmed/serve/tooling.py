"""A chat request's tools: `tools` and `tool_choice` checked and planned, tool messages checked
and rendered. Every refusal is a 400 that names the field.

What each `tool_choice` does, as OpenAI and vLLM do it:

- `none`: the tools are not shown to the model at all, so the reply is exactly the one the same
  chat without tools gets (OpenAI shows them and forbids a call; a model shown tools in its
  convention may still write a call as text, which would then arrive as content);
- a named function: the reply is decoded to that function's parameters schema (llguidance,
  discmed.structured; its objects closed to the properties they declare, as vLLM's default
  xgrammar decodes them: `closed`) and returned as its call;
- `required`: decoded to a choice between the tools' call objects, `{"name": <const>,
  "arguments": <its schema>}`, one call;
- `auto` (the default when tools are given): the tools are shown in the format's convention
  (discmed.tools) and the reply is read for calls; a format without one (disc) is refused, as
  its model cannot choose to call.

Named and required show the tools too where the format has a convention (vLLM passes them to
the template either way), so the model sees what it is made to call. A forced call is one call;
`parallel_tool_calls: false` keeps the first of the calls an `auto` reply makes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from discmed import tools as conventions
from discmed.engine.protocol import STRUCTURED_OUTPUT
from discmed.serve.protocol import ChatCompletionRequest
from discmed.serve.responses import APIError
from discmed.structured import GrammarError, check_schema

# A function without `parameters` takes none: its arguments are the empty object.
NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}


@dataclass
class ToolPlan:
    mode: str  # "none" | "auto" | "named" | "required"
    shown: list[dict] | None  # the tools as the prompt shows them (None: not shown)
    grammar: str | None  # what a forced call is decoded to
    reader: Callable[[], conventions.CallStream] | None  # one per choice: reads its reply

    @property
    def forced(self) -> bool:
        return self.mode in ("named", "required")


_OPEN_KEYS = ("additionalProperties", "unevaluatedProperties", "patternProperties", "allOf", "$ref")


def closed(schema: Any) -> Any:
    """`schema` with every object that does not say whether it takes more properties closed
    (`additionalProperties: false`), as xgrammar's strict mode (vLLM's default) decodes a tool's
    arguments: a function takes the arguments it declares. JSON Schema's own default (any extra
    property) lets a small model wander into invented keys until max_tokens. Objects under
    `allOf` are left as they are (closing each part would refuse the others' properties)."""
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k in ("properties", "$defs", "definitions"):
            out[k] = {name: closed(sub) for name, sub in v.items()} if isinstance(v, dict) else v
        elif k in ("items", "prefixItems", "anyOf", "oneOf", "not", "if", "then", "else"):
            out[k] = closed(v)
        else:
            out[k] = v
    is_object = schema.get("type") == "object" or "properties" in schema
    if is_object and not any(k in schema for k in _OPEN_KEYS):
        out["additionalProperties"] = False
    return out


def _rebase(schema: Any, base: str) -> Any:
    """`schema` with its local references (`#...`) rewritten to resolve under `base`, where it
    is moved to (a tool's `$defs` keep working inside the choice between tools)."""
    if isinstance(schema, dict):
        return {k: base + v[1:] if k == "$ref" and isinstance(v, str) and v.startswith("#") else _rebase(v, base)
                for k, v in schema.items()}  # fmt: skip
    if isinstance(schema, list):
        return [_rebase(v, base) for v in schema]
    return schema


def call_choice(names: list[str], schemas: list[dict]) -> dict:
    """The schema of one call to any of the tools: `{"name": const, "arguments": schema}` each."""
    defs = {f"tool{i}": _rebase(s, f"#/$defs/tool{i}") for i, s in enumerate(schemas)}
    options = [{"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
                "properties": {"name": {"const": n}, "arguments": {"$ref": f"#/$defs/tool{i}"}}}
               for i, n in enumerate(names)]  # fmt: skip
    return {"$defs": defs, "anyOf": options}


def plan(body: ChatCompletionRequest, served: Any) -> ToolPlan | None:
    """What the request's tools make of it (None: no tools)."""
    tools, choice = body.tools or [], body.tool_choice
    if not tools:
        if choice not in (None, "none"):
            raise APIError(400, "tool_choice: only allowed when tools are given", param="tool_choice", code="invalid_tool_choice")
        return None
    names = [t.function.name for t in tools]
    schemas = []
    for i, t in enumerate(tools):
        if names.index(t.function.name) != i:
            raise APIError(400, f"tools.{i}.function.name: a second tool named {t.function.name!r}",
                           param=f"tools.{i}.function.name", code="invalid_tools")  # fmt: skip
        schema = t.function.parameters if t.function.parameters is not None else NO_PARAMETERS
        if schema.get("type", "object") != "object":
            raise APIError(400, f"tools.{i}.function.parameters: must describe an object (the arguments), "
                           f"not {schema.get('type')!r}", param=f"tools.{i}.function.parameters",
                           code="invalid_tool_schema")  # fmt: skip
        _check(json.dumps(schema), f"tools.{i}.function.parameters")
        schemas.append(schema)
    mode = "auto" if choice is None else choice if isinstance(choice, str) else "named"
    if mode == "none":
        return ToolPlan("none", None, None, None)
    fmt = getattr(served, "format", None)
    conv = conventions.convention(fmt, served.tokenizer) if fmt is not None else None
    shown = [t.model_dump(exclude_none=True) for t in tools] if conv is not None else None
    if mode == "auto":
        if conv is None:
            what = f"chat format {fmt.name!r}" if fmt is not None else "this server's engine"
            raise APIError(400, f'tool_choice: "auto" needs a tool-call convention, and the {what} has none '
                           "(its model was not trained to call tools, so it cannot choose to); name a function "
                           '({"type": "function", "function": {"name": ...}}) or send "required" to have the call '
                           'decoded to its schema, or "none"', param="tool_choice",
                           code="invalid_tool_choice")  # fmt: skip
        single = body.parallel_tool_calls is False
        return ToolPlan("auto", shown, None, lambda: conventions.call_stream(conv, names, single))
    if STRUCTURED_OUTPUT not in served.engine.features:
        raise APIError(400, "tool_choice: a forced call needs constrained decoding, which this server's engine "
                       "does not do", param="tool_choice", code="invalid_tool_choice")  # fmt: skip
    if body.response_format is not None and body.response_format.type != "text":
        raise APIError(400, "response_format: cannot be combined with a tool_choice that forces a call (the "
                       "call's arguments are decoded to the tool's schema)", param="response_format",
                           code="invalid_tool_choice")  # fmt: skip
    if mode == "named":
        name = choice.function.name
        if name not in names:
            raise APIError(400, f"tool_choice.function.name: no tool named {name!r} in tools "
                           f"({', '.join(names)})", param="tool_choice.function.name", code="invalid_tool_choice")  # fmt: skip
        i = names.index(name)
        grammar = served.schema_grammar(closed(schemas[i]), f"tools.{i}.function.parameters")
        return ToolPlan("named", shown, grammar, lambda: conventions.NamedCall(name=name))
    grammar = served.schema_grammar(call_choice(names, [closed(s) for s in schemas]), "tools")
    return ToolPlan("required", shown, grammar, conventions.RequiredCall)


@lru_cache(maxsize=256)
def _check(schema_json: str, param: str) -> None:
    """check_schema, once per schema (a client sends the same tools with every request)."""
    try:
        check_schema(json.loads(schema_json), param)
    except GrammarError as e:
        raise APIError(400, str(e), param=e.param, code="invalid_tool_schema") from None


def has_tool_messages(body: ChatCompletionRequest) -> bool:
    return any(m.role == "tool" or m.tool_calls for m in body.messages)


def checked_messages(body: ChatCompletionRequest, served: Any) -> list[dict]:
    """A conversation with tool calls and results, checked as OpenAI does, as the dicts
    discmed.tools renders: system messages first, then user and assistant turns, each tool
    result right after the assistant message that made its call and naming its id."""
    fmt = getattr(served, "format", None)
    conv = conventions.convention(fmt, served.tokenizer) if fmt is not None else None
    out: list[dict] = []
    prev: str | None = None
    call_ids: set[str] = set()  # the ids of the calls of the latest assistant message

    def fail(where: str, message: str) -> APIError:
        return APIError(400, f"{where}: {message}", param=where, code="invalid_messages")

    for i, m in enumerate(body.messages):
        where = f"messages.{i}"
        if (m.role == "tool" or m.tool_calls) and conv is None:
            field = "role" if m.role == "tool" else "tool_calls"
            what = f"chat format {fmt.name!r}" if fmt is not None else "this server's engine"
            raise fail(f"{where}.{field}", f"the {what} has no tool-call convention to render tool calls and "
                       "their results in")  # fmt: skip
        content = m.text_content() if m.content is not None else None
        msg: dict = {"role": m.role, "content": content or ""}
        if m.role == "system":
            if prev not in (None, "system"):
                raise fail(f"{where}.role", "a system message may only come before the first user turn")
        elif m.role == "user":
            if prev == "user":
                raise fail(f"{where}.role", "two user turns in a row")
        elif m.role == "assistant":
            if prev in (None, "system"):
                raise fail(f"{where}.role", "the conversation must start with a user turn")
            if prev == "assistant":
                raise fail(f"{where}.role", "two assistant turns in a row")
            calls = []
            for j, c in enumerate(m.tool_calls or []):
                try:
                    args = json.loads(c.function.arguments)
                except (ValueError, RecursionError) as e:
                    raise fail(f"{where}.tool_calls.{j}.function.arguments", f"not JSON: {e}") from None
                if not isinstance(args, dict):
                    raise fail(f"{where}.tool_calls.{j}.function.arguments", "must be a JSON object")
                calls.append({"id": c.id, "name": c.function.name, "arguments": args})
            if calls:
                msg["tool_calls"] = calls
            call_ids = {c["id"] for c in calls}
        else:  # tool
            if prev not in ("assistant", "tool") or not call_ids:
                raise fail(f"{where}.role", "a tool message must follow the assistant message whose tool_calls it answers")
            if m.tool_call_id is None:
                raise fail(f"{where}.tool_call_id", "required field is missing")
            if m.tool_call_id not in call_ids:
                raise fail(f"{where}.tool_call_id", f"no tool call with id {m.tool_call_id!r} in the assistant "
                           "message before it")  # fmt: skip
            msg["tool_call_id"] = m.tool_call_id
        if m.role in ("system", "user") and not msg["content"].strip():
            raise fail(f"{where}.content", "empty content")
        if m.role == "assistant" and not msg["content"].strip() and not msg.get("tool_calls"):
            raise fail(f"{where}.content", "empty content (and no tool_calls)")
        if m.role == "tool" and m.content is None:
            raise fail(f"{where}.content", "required field is missing")
        out.append(msg)
        prev = m.role
    if prev not in ("user", "tool"):
        raise fail("messages", "the last message must be from the user or a tool")
    return out


def prompt(served: Any, messages: list[dict], shown: list[dict] | None, template_kwargs: dict | None) -> list[int]:
    """The prompt ids of a conversation that shows tools or carries tool messages."""
    try:
        return conventions.render(served.format, served.tokenizer, messages, shown, template_kwargs)
    except conventions.ToolFormatError as e:
        where = f"messages.{e.where}" if e.where else "messages"
        raise APIError(400, f"{where}: {e}", param=where, code="invalid_messages") from None
