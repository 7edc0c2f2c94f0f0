"""What the engine's deltas become on the wire: OpenAI's chat and text completion responses
and their server-sent-event streams, with logprobs in OpenAI's shapes.

`serving.py` turns a request into engine streams (`Job`s, one per choice); this module waits on
them — a whole reply (`collect_all`), or a stream of chunks (`chat_stream`,
`completion_stream`) — and stops their generation when the client goes away.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from discmed.engine.protocol import Delta, Stream, TokenLogprob, merge
from discmed.reasoning import StreamSplitter, split
from discmed.serve.protocol import (
    ChatCompletionChunk,
    ChatCompletionResponse,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    DeltaFunctionCall,
    DeltaMessage,
    DeltaToolCall,
    ErrorInfo,
    ErrorResponse,
    FunctionCall,
    ResponseMessage,
    TokenLogprobInfo,
    ToolCall,
    TopLogprob,
    UsageInfo,
)
from discmed.tools import CallStream, read


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers


@dataclass
class Job:
    """One choice of a request: its engine request and what to put before its text."""

    index: int
    req: Stream  # the engine's stream of this choice
    prefix: str = ""
    prefix_tokens: int = 0
    # Whether the reply starts inside a <think> block (`thinking`); None: a model without reasoning.
    started: bool | None = None
    calls: CallStream | None = None  # reads the reply for tool calls (a request with tools)


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def call_deltas(events: list[tuple], ids: list[str]) -> list[DeltaMessage]:
    """A CallStream's events as stream deltas, in OpenAI's order: a call opens with its index,
    id, type and name (arguments ""), then its arguments come in fragments. `ids` collects the
    ids given, by call index."""
    out = []
    for e in events:
        if e[0] == "content":
            if e[1]:
                out.append(DeltaMessage(content=e[1]))
        elif e[0] == "call":
            ids.append(call_id())
            head = DeltaToolCall(index=e[1], id=ids[-1], type="function", function=DeltaFunctionCall(name=e[2], arguments=""))
            out.append(DeltaMessage(tool_calls=[head]))
        else:
            out.append(DeltaMessage(tool_calls=[DeltaToolCall(index=e[1], function=DeltaFunctionCall(arguments=e[2]))]))
    return out


@dataclass
class Streamed:
    """A response to send as server-sent events: its chunks, and the jobs to cancel when the
    client goes away."""

    content: Any  # AsyncIterator[str]
    jobs: list[Job]


def chat_logprobs(served: Any, entries: list[TokenLogprob] | None) -> ChoiceLogprobs | None:
    if entries is None:
        return None
    tok = served.token_text
    return ChoiceLogprobs(
        content=[
            TokenLogprobInfo(
                token=tok(e.id)[0],
                logprob=e.logprob,
                bytes=list(tok(e.id)[1]),
                top_logprobs=[TopLogprob(token=tok(i)[0], logprob=lp, bytes=list(tok(i)[1])) for i, lp in e.top],
            )
            for e in entries
        ]
    )


async def collect(req: Any, is_disconnected: Callable) -> tuple[str, Delta, list[TokenLogprob] | None]:
    """Wait for a whole reply; a client that hangs up cancels its generation (checked every
    half second, whether or not tokens are flowing)."""
    parts: list[str] = []
    logprobs: list[TokenLogprob] | None = None
    prompt_lp = None
    check = time.monotonic() + 0.5
    while True:
        try:
            delta: Delta | None = await asyncio.wait_for(req.out.get(), timeout=max(0.0, check - time.monotonic()))
        except TimeoutError:
            delta = None
        if delta is not None:
            parts.append(delta.text)
            if delta.logprobs is not None:
                logprobs = (logprobs or []) + delta.logprobs
            if delta.prompt_logprobs is not None:
                prompt_lp = delta.prompt_logprobs
            if delta.finish_reason is not None:
                delta.prompt_logprobs = prompt_lp
                return "".join(parts), delta, logprobs
        if time.monotonic() >= check:
            check = time.monotonic() + 0.5
            if await is_disconnected():
                req.cancel()
                return "".join(parts), Delta("", "cancelled"), logprobs


async def collect_all(jobs: list[Job], is_disconnected: Callable) -> list[tuple[str, Delta, Any]]:
    try:
        results = await asyncio.gather(*(collect(j.req, is_disconnected) for j in jobs))
    finally:
        for j in jobs:
            j.req.cancel()
    for _, last, _ in results:
        if last.finish_reason == "error":
            raise APIError(500, last.error or "generation failed", type="server_error")
    return results


def chat_response(served: Any, jobs: list[Job], results: list, prompt_len: int, info: Any) -> dict:
    """A reasoning model's reply (a job `started` not None) has its thinking in
    `reasoning_content`, apart from its `content` (discmed.reasoning.split)."""
    choices, completion = [], 0
    for job, (text, last, lps) in zip(jobs, results, strict=True):
        completion += last.completion_tokens + job.prefix_tokens
        reasoning, text = split(text, job.started) if job.started is not None else (None, text)
        content, calls, finish = job.prefix + text, None, last.finish_reason
        if job.calls is not None:  # read exactly as a stream reads it (discmed.tools.read)
            reading = read(job.calls, text, last.finish_reason == "stop")
            content = job.prefix + reading.content
            if reading.calls:
                calls = [ToolCall(id=call_id(), function=FunctionCall(name=n, arguments=a)) for n, a in reading.calls]
                content = content or None
                finish = "tool_calls" if finish == "stop" else finish
        choices.append(
            Choice(
                index=job.index,
                message=ResponseMessage(content=content, tool_calls=calls, reasoning_content=reasoning),
                logprobs=chat_logprobs(served, lps),
                finish_reason=finish,
            )
        )
    usage = UsageInfo(prompt_tokens=prompt_len, completion_tokens=completion, total_tokens=prompt_len + completion)
    return ChatCompletionResponse(model=served.name, choices=choices, usage=usage, safety=info).model_dump()


async def merged(jobs: list[Job]) -> AsyncIterator[tuple[Job, Delta]]:
    """The deltas of several choices as they come, each with its job; ends when all finished.
    Under load several tokens of one choice may be waiting: they come as one delta."""
    if len(jobs) == 1:
        job = jobs[0]
        while True:
            delta = await job.req.out.get()
            while delta.finish_reason is None and not job.req.out.empty():
                delta = merge(delta, job.req.out.get_nowait())
            yield job, delta
            if delta.finish_reason is not None:
                return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(job: Job) -> None:
        while True:
            d = await job.req.out.get()
            await queue.put((job, d))
            if d.finish_reason is not None:
                return

    tasks = [asyncio.create_task(pump(j)) for j in jobs]
    try:
        left = len(jobs)
        while left:
            job, delta = await queue.get()
            left -= delta.finish_reason is not None
            yield job, delta
    finally:
        for t in tasks:
            t.cancel()


def sse_error(message: str) -> str:
    err = ErrorResponse(error=ErrorInfo(message=message, type="server_error"))
    return f"data: {err.model_dump_json()}\n\n"


async def chat_stream(served: Any, jobs: list[Job], prompt_len: int, info: Any, include_usage: bool) -> AsyncIterator[str]:
    """A reasoning model's thinking streams as `reasoning_content` deltas, apart from `content`."""
    cid, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), served.name
    splitters = {job.index: StreamSplitter(job.started) for job in jobs if job.started is not None}

    def chunk(index: int, delta: DeltaMessage, finish: str | None = None, **extra: Any) -> str:
        c = ChatCompletionChunk(
            id=cid, created=created, model=model, choices=[ChunkChoice(index=index, delta=delta, finish_reason=finish, logprobs=extra.pop("logprobs", None))], **extra
        )
        return f"data: {c.model_dump_json(exclude_none=True)}\n\n"

    # Content chunks are the hot path (one per token): built from a fixed head, not pydantic.
    head = f'data: {{"id":"{cid}","object":"chat.completion.chunk","created":{created},"model":{json.dumps(model)},"choices":[{{"index":'
    tail = '},"finish_reason":null}]}\n\n'
    completion = 0
    ids: dict[int, list[str]] = {job.index: [] for job in jobs}  # tool call ids, per choice
    try:
        for job in jobs:
            first = job.prefix if job.prefix or job.calls is None else None  # a reply that may be a call: content null
            yield chunk(job.index, DeltaMessage(role="assistant", content=first), safety=info)
            completion += job.prefix_tokens
            if job.calls is not None:
                for d in call_deltas(job.calls.start(), ids[job.index]):  # a named call opens at once
                    yield chunk(job.index, d)
        async for job, delta in merged(jobs):
            if delta.finish_reason == "error":
                yield sse_error(delta.error or "generation failed")
                break
            tools_or_thinking = job.calls is not None or job.index in splitters
            if tools_or_thinking and (delta.text or delta.logprobs or delta.finish_reason is not None):
                thought, answer = "", delta.text
                if job.index in splitters:
                    thought, answer = splitters[job.index].feed(delta.text)
                    if delta.finish_reason is not None:
                        rest = splitters[job.index].flush()
                        thought, answer = thought + rest[0], answer + rest[1]
                if thought:
                    yield chunk(job.index, DeltaMessage(reasoning_content=thought))
                lps = chat_logprobs(served, delta.logprobs)
                if job.calls is not None:
                    events = job.calls.feed(answer) if answer else []
                    if delta.finish_reason is not None:
                        events += job.calls.finish(delta.finish_reason == "stop")
                    pieces = call_deltas(events, ids[job.index]) or ([DeltaMessage()] if lps else [])
                    for k, d in enumerate(pieces):  # the step's logprobs ride on its last piece
                        yield chunk(job.index, d, logprobs=lps if k == len(pieces) - 1 else None)
                elif answer or delta.logprobs:
                    yield chunk(job.index, DeltaMessage(content=answer), logprobs=lps)
            elif delta.text or delta.logprobs:
                if delta.logprobs is None:
                    yield f'{head}{job.index},"delta":{{"content":{json.dumps(delta.text, ensure_ascii=False)}{tail}'
                else:
                    yield chunk(job.index, DeltaMessage(content=delta.text), logprobs=chat_logprobs(served, delta.logprobs))
            if delta.finish_reason is None:
                continue
            completion += delta.completion_tokens
            finish = delta.finish_reason if delta.finish_reason in ("stop", "length") else "stop"
            if ids[job.index] and finish == "stop":
                finish = "tool_calls"
            yield chunk(job.index, DeltaMessage(), finish)
        else:
            if include_usage:
                usage = UsageInfo(prompt_tokens=prompt_len, completion_tokens=completion, total_tokens=prompt_len + completion)
                c = ChatCompletionChunk(id=cid, created=created, model=model, choices=[], usage=usage)
                yield f"data: {c.model_dump_json(exclude_none=True)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        # Runs when the stream ends and when the client disconnects (Starlette cancels the
        # generator): either way the engine stops spending steps on these requests.
        for job in jobs:
            job.req.cancel()


def completion_response(served: Any, body: CompletionRequest, jobs: list[Job], results: list, prompts: list) -> dict:
    n = body.n or 1
    choices, completion = [], 0
    for job, (text, last, lps) in zip(jobs, results, strict=True):
        prompt = prompts[job.index // n]
        completion += last.completion_tokens
        out = text
        entries: list[TokenLogprob] = []
        if body.echo:
            out = served.tokenizer.decode(prompt, skip_special_tokens=False) + text
            if last.prompt_logprobs is not None:
                entries += last.prompt_logprobs
        if lps:
            entries += lps
        logprobs = completion_logprobs(served, entries) if body.logprobs is not None else None
        choices.append(CompletionChoice(index=job.index, text=out, logprobs=logprobs, finish_reason=last.finish_reason))
    prompt_tokens = sum(len(p) for p in prompts) * n
    usage = UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)
    return CompletionResponse(model=served.name, choices=choices, usage=usage).model_dump()


def completion_logprobs(served: Any, entries: list[TokenLogprob]) -> CompletionLogprobs:
    out = CompletionLogprobs()
    offset = 0
    for e in entries:
        text = served.token_text(e.id)[0]
        out.tokens.append(text)
        out.token_logprobs.append(e.logprob)
        out.top_logprobs.append({served.token_text(i)[0]: lp for i, lp in e.top} if e.logprob is not None else None)
        out.text_offset.append(offset)
        offset += len(text)
    return out


async def completion_stream(served: Any, jobs: list[Job], include_usage: bool) -> AsyncIterator[str]:
    cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    prompt_tokens = sum(len(j.req.prompt_ids) for j in jobs)
    completion = 0

    def chunk(index: int, text: str, finish: str | None, logprobs: Any = None, usage: Any = None) -> str:
        c = CompletionResponse(
            id=cid, created=created, model=served.name, usage=usage or UsageInfo(),
            choices=[] if usage else [CompletionChoice(index=index, text=text, logprobs=logprobs, finish_reason=finish)],
        )  # fmt: skip
        d = c.model_dump(exclude_none=True)
        if usage is None:
            d.pop("usage")
        return f"data: {json.dumps(d, ensure_ascii=False)}\n\n"

    # Text chunks are the hot path (one per token): built from a fixed head, as chat_stream's.
    head = (f'data: {{"id":"{cid}","object":"text_completion","created":{created},'
            f'"model":{json.dumps(served.name, ensure_ascii=False)},"choices":[{{"index":')  # fmt: skip
    try:
        async for job, delta in merged(jobs):
            if delta.finish_reason == "error":
                yield sse_error(delta.error or "generation failed")
                break
            finish = delta.finish_reason if delta.finish_reason in ("stop", "length", None) else "stop"
            if finish is None and not delta.logprobs:
                if delta.text:
                    yield f'{head}{job.index},"text":{json.dumps(delta.text, ensure_ascii=False)}}}]}}\n\n'
                continue
            lps = completion_logprobs(served, delta.logprobs) if delta.logprobs else None
            if delta.text or finish:
                yield chunk(job.index, delta.text, finish, lps)
            if delta.finish_reason is not None:
                completion += delta.completion_tokens
        else:
            if include_usage:
                usage = UsageInfo(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)
                yield chunk(0, "", None, usage=usage)
        yield "data: [DONE]\n\n"
    finally:
        for job in jobs:
            job.req.cancel()
