"""`POST /v1/responses`: OpenAI's Responses API for text, as one more door to the chat path.

A Responses request becomes a chat completion request — `instructions` a leading system
message, `input` the messages (a string: one user message; `developer` is `system`),
`max_output_tokens` max_tokens — and goes through `OpenAIServing`'s chat path: the same
validation, safety layer (the verdict in the response's `safety` extra, its instruction in the
text unless `safety` is false), metrics and request ids. A 400 names the Responses field
(`input.2.content`, `max_output_tokens`), not the chat field it was checked as.

Streamed, the events come in OpenAI's order: response.created, response.in_progress,
response.output_item.added, response.content_part.added, response.output_text.delta…,
response.output_text.done, response.content_part.done, response.output_item.done, then
response.completed (response.incomplete when max_output_tokens cut the text, as OpenAI does).

What the subset leaves out is refused with a 501 (Not Implemented) that names the field,
rather than ignored: tools, a conversation kept on the server (previous_response_id,
conversation, store, background), reasoning settings, non-text formats, non-text input parts
and non-message input items. discmed keeps no responses, so there is nothing to retrieve.
A reasoning model's thinking is not returned here (chat completions carry it apart in
`reasoning_content`); the text is its answer.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from discmed.reasoning import StreamSplitter, split
from discmed.serve.protocol import (
    ChatCompletionRequest,
    ResponseObject,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponsesRequest,
    ResponseUsage,
)
from discmed.serve.responses import APIError, Job, Streamed, collect_all, merged

NOT_HERE = "is not part of the text subset of /v1/responses that discmed serves"


def _refuse(param: str, why: str) -> APIError:
    return APIError(501, f"{param}: {why}", param=param, code="not_implemented")


def refuse(body: ResponsesRequest) -> None:
    """501 for every field set that asks for more than text generation."""
    extra = body.model_extra or {}
    if body.tools:
        raise _refuse("tools", f"tools in the Responses API {NOT_HERE}; call /v1/chat/completions with tools")
    if body.tool_choice not in (None, "none", "auto"):
        raise _refuse("tool_choice", f"tool_choice {NOT_HERE}; call /v1/chat/completions with tools")
    if body.previous_response_id is not None or extra.get("conversation") is not None:
        name = "previous_response_id" if body.previous_response_id is not None else "conversation"
        raise _refuse(name, "discmed keeps no responses or conversations; send the whole conversation as input")
    if body.store:
        raise _refuse("store", "discmed keeps no responses; send store: false (or leave it out)")
    if body.background:
        raise _refuse("background", "background responses are not implemented; send background: false")
    if body.include:
        raise _refuse("include", f"include {NOT_HERE}")
    if body.reasoning is not None:
        raise _refuse("reasoning", f"reasoning settings {NOT_HERE}")
    fmt = (body.text or {}).get("format") or {"type": "text"}
    if not isinstance(fmt, dict):
        raise APIError(400, "text.format: expected an object with a type", param="text.format")
    if fmt.get("type") != "text":
        raise _refuse("text.format", f"text.format {fmt.get('type')!r} {NOT_HERE} (text only; /v1/chat/completions "
                      "takes response_format)")  # fmt: skip
    if body.top_logprobs:
        raise _refuse("top_logprobs", f"logprobs {NOT_HERE}; /v1/chat/completions returns them")
    if body.truncation == "auto":
        raise _refuse("truncation", "discmed does not drop input to fit; a prompt too long is refused")
    if body.max_tool_calls is not None:
        raise _refuse("max_tool_calls", f"tools {NOT_HERE}")
    if extra.get("prompt") is not None:
        raise _refuse("prompt", f"stored prompt templates {NOT_HERE}; send instructions and input")


def _messages(body: ResponsesRequest) -> tuple[list[dict], list[str]]:
    """The chat messages of a Responses request, and the field each came from."""
    msgs: list[dict] = []
    origin: list[str] = []
    if body.instructions is not None:
        msgs.append({"role": "system", "content": body.instructions})
        origin.append("instructions")
    if isinstance(body.input, str):
        msgs.append({"role": "user", "content": body.input})
        origin.append("input")
        return msgs, origin
    for i, item in enumerate(body.input):
        where = f"input.{i}"
        if not isinstance(item, dict):
            raise APIError(400, f"{where}: expected an object (a message)", param=where)
        kind = item.get("type", "message")
        if kind != "message":
            raise _refuse(f"{where}.type", f"input items of type {kind!r} {NOT_HERE} (messages only)")
        role = item.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            raise APIError(400, f"{where}.role: expected user, assistant, system or developer, got {role!r}",
                           param=f"{where}.role")  # fmt: skip
        content = item.get("content")
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                ptype = part.get("type") if isinstance(part, dict) else None
                if ptype in ("input_text", "output_text") and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif ptype in ("input_text", "output_text"):
                    raise APIError(400, f"{where}.content.{j}.text: expected a string", param=f"{where}.content.{j}.text")
                elif isinstance(ptype, str):
                    raise _refuse(f"{where}.content.{j}.type", f"content of type {ptype!r} {NOT_HERE} (text only)")
                else:
                    raise APIError(400, f"{where}.content.{j}: expected a content part with a type",
                                   param=f"{where}.content.{j}")  # fmt: skip
            content = "".join(texts)
        if not isinstance(content, str):
            raise APIError(400, f"{where}.content: expected a string or a list of text parts", param=f"{where}.content")
        msgs.append({"role": "system" if role == "developer" else role, "content": content})
        origin.append(where)
    return msgs, origin


_CHAT_PARAM = re.compile(r"^messages(?:\.(\d+)|\[(\d+)\])?")


def _renamed(e: APIError, origin: list[str]) -> APIError:
    """A chat path's 400 under the Responses API's field names."""

    def rename(text: str) -> str:
        def sub(m: re.Match) -> str:
            i = m.group(1) or m.group(2)
            return origin[int(i)] if i is not None and int(i) < len(origin) else "input"

        text = _CHAT_PARAM.sub(sub, text)
        return re.sub(r"^max_(completion_)?tokens", "max_output_tokens", text)

    message = rename(e.message)
    if e.code == "context_length_exceeded":
        message = message.replace("in the messages", "in the input").replace("of the messages", "of the input")
    param = rename(e.param) if e.param else e.param
    return APIError(e.status, message, e.type, param, e.code, e.headers)


def chat_request(body: ResponsesRequest) -> tuple[ChatCompletionRequest, list[str]]:
    msgs, origin = _messages(body)
    try:
        chat = ChatCompletionRequest.model_validate({
            "model": body.model, "messages": msgs, "max_tokens": body.max_output_tokens,
            "temperature": body.temperature, "top_p": body.top_p, "user": body.user, "safety": body.safety,
            "ignore_eos": body.ignore_eos,
        })  # fmt: skip
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(x) for x in err.get("loc", ()))
        raise _renamed(APIError(400, f"{param}: {err.get('msg')}", param=param), origin) from None
    return chat, origin


def _base(served: Any, body: ResponsesRequest, rid: str, info: Any) -> ResponseObject:
    defaults = served.defaults
    return ResponseObject(
        id=rid, status="in_progress", instructions=body.instructions, max_output_tokens=body.max_output_tokens,
        model=served.name, temperature=body.temperature if body.temperature is not None else defaults.temperature,
        top_p=body.top_p if body.top_p is not None else defaults.top_p, user=body.user, metadata=body.metadata or {},
        safety=info,
    )  # fmt: skip


def _finished(resp: ResponseObject, item: ResponseOutputMessage, finish: str, prompt_len: int, out_tokens: int) -> None:
    incomplete = finish == "length"
    resp.status = item.status = "incomplete" if incomplete else "completed"
    resp.incomplete_details = {"reason": "max_output_tokens"} if incomplete else None
    resp.output = [item]
    resp.usage = ResponseUsage(input_tokens=prompt_len, output_tokens=out_tokens, total_tokens=prompt_len + out_tokens)


async def create(serving: Any, body: ResponsesRequest, request: Any) -> dict | Any | None:
    """The response body, a stream to send (serving.Streamed), or None (the client went away)."""
    serving.check_model(body.model)
    refuse(body)
    chat, origin = chat_request(body)
    if chat.safety is None and request.headers.get("x-discmed-safety", "").lower() in ("off", "0", "false"):
        chat.safety = False
    try:
        jobs, prompt, info, verdict = await serving._chat_jobs(chat)
    except APIError as e:
        raise _renamed(e, origin) from None
    request.state.jobs = jobs
    serving.metrics.verdict(verdict)
    served = serving.served
    rid, item_id = f"resp_{uuid.uuid4().hex}", f"msg_{uuid.uuid4().hex}"
    if body.stream:
        return Streamed(stream(served, body, jobs[0], len(prompt), info, rid, item_id), jobs)
    results = await collect_all(jobs, request.is_disconnected)
    serving.metrics.observe_jobs(jobs)
    (text, last, _), job = results[0], jobs[0]
    if last.finish_reason == "cancelled":
        return None
    if job.started is not None:
        text = split(text, job.started)[1]
    resp = _base(served, body, rid, info)
    item = ResponseOutputMessage(id=item_id, status="completed", content=[ResponseOutputText(text=job.prefix + text)])
    _finished(resp, item, last.finish_reason, len(prompt), last.completion_tokens + job.prefix_tokens)
    return resp.model_dump()


async def stream(served: Any, body: ResponsesRequest, job: Job, prompt_len: int, info: Any, rid: str,
                 item_id: str) -> AsyncIterator[str]:  # fmt: skip
    seq = 0

    def event(kind: str, **fields: Any) -> str:
        nonlocal seq
        data = {"type": kind, "sequence_number": seq, **fields}
        seq += 1
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    resp = _base(served, body, rid, info)
    item = ResponseOutputMessage(id=item_id, status="in_progress")
    splitter = StreamSplitter(job.started) if job.started is not None else None
    text = job.prefix
    try:
        yield event("response.created", response=resp.model_dump())
        yield event("response.in_progress", response=resp.model_dump())
        yield event("response.output_item.added", output_index=0, item=item.model_dump())
        yield event("response.content_part.added", **where, part=ResponseOutputText(text="").model_dump())
        if job.prefix:
            yield event("response.output_text.delta", **where, delta=job.prefix, logprobs=[])
        async for _, delta in merged([job]):
            if delta.finish_reason == "error":
                resp.status, resp.error = "failed", {"code": "server_error", "message": delta.error or "generation failed"}
                yield event("response.failed", response=resp.model_dump())
                return
            piece = delta.text
            if splitter is not None:
                piece = splitter.feed(delta.text)[1] + (splitter.flush()[1] if delta.finish_reason is not None else "")
            if piece:
                text += piece
                yield event("response.output_text.delta", **where, delta=piece, logprobs=[])
            if delta.finish_reason is not None:
                break
        part = ResponseOutputText(text=text)
        yield event("response.output_text.done", **where, text=text, logprobs=[])
        yield event("response.content_part.done", **where, part=part.model_dump())
        item.content = [part]
        _finished(resp, item, delta.finish_reason, prompt_len, delta.completion_tokens + job.prefix_tokens)
        yield event("response.output_item.done", output_index=0, item=item.model_dump())
        yield event("response.incomplete" if resp.status == "incomplete" else "response.completed", response=resp.model_dump())
    finally:
        job.req.cancel()
