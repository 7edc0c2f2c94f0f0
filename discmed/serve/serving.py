"""The serving logic behind the routes: a validated request → generation requests → a response.

`app.py` routes and handles errors; this module turns a ChatCompletionRequest or a
CompletionRequest into engine submissions (one per choice, `n` of them), and their deltas
into OpenAI's response or its server-sent-event stream. What a field asks for that discmed
cannot do is refused here with a 400 that names the field, never silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from discmed.backend import GenParams
from discmed.chat import DataError, validate_messages
from discmed.sampling import SEED_RANGE, normalized
from discmed.serve.engine import Delta, EngineUnavailable, QueueFull, TokenLogprob
from discmed.serve.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    ErrorInfo,
    ErrorResponse,
    ResponseMessage,
    SafetyInfo,
    TokenLogprobInfo,
    TopLogprob,
    UsageInfo,
)
from discmed.serve.safety import last_user_text

# Fields of OpenAI's API that change what a reply is and that discmed does not do: refused.
UNSUPPORTED = {
    "functions": "function calling needs a model with a tool-call format",
    "function_call": "function calling needs a model with a tool-call format",
    "audio": "discmed serves text models",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
}


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
    req: Any
    prefix: str = ""
    prefix_tokens: int = 0
    # Whether the reply starts inside a <think> block (`thinking`); None: a model without reasoning.
    started: bool | None = None


# -- building requests -------------------------------------------------------------------------


def refuse_unsupported(body: Any, engine: Any) -> None:
    """400 for every field set in `body` that discmed would otherwise have to ignore."""
    extra = body.model_extra or {}
    for name, why in UNSUPPORTED.items():
        if extra.get(name) not in (None, [], {}):
            raise APIError(400, f"{name}: {why}", param=name)
    modalities = extra.get("modalities")
    if modalities not in (None, ["text"]):
        raise APIError(400, "modalities: discmed serves text only", param="modalities")
    if getattr(body, "tools", None):
        raise APIError(400, "tools: this model has no tool-call format; tools cannot be honoured", param="tools")
    if getattr(body, "tool_choice", None) not in (None, "none"):
        raise APIError(400, "tool_choice: this model has no tool-call format", param="tool_choice")
    if getattr(body, "suffix", None):
        raise APIError(400, "suffix: insertion (fill in the middle) is not supported", param="suffix")
    features = getattr(engine, "features", frozenset())
    wants_logprobs = bool(getattr(body, "logprobs", None) is not None and body.logprobs is not False)
    if wants_logprobs and "logprobs" not in features:
        raise APIError(400, "logprobs: not supported by this server's engine", param="logprobs")
    rf = getattr(body, "response_format", None)
    if rf is not None and rf.type != "text" and "structured_output" not in features:
        raise APIError(400, "response_format: not supported by this server's engine", param="response_format")
    if body.logit_bias and "logprobs" not in features:
        raise APIError(400, "logit_bias: not supported by this server's engine", param="logit_bias")


def gen_params(body: Any, served: Any, max_tokens: int) -> GenParams:
    """GenParams of a request: fields the client left out take the model's own defaults (its
    generation_config), as vLLM does; values too small to compute become their safe
    equivalents (discmed.sampling.normalized), as vLLM treats a temperature below 1e-5."""
    d = served.defaults
    pick = lambda v, default: default if v is None else v  # noqa: E731
    return normalized(
        GenParams(
            max_new_tokens=max_tokens,
            temperature=pick(body.temperature, d.temperature),
            top_p=pick(body.top_p, d.top_p),
            top_k=pick(body.top_k, d.top_k),
            min_p=pick(body.min_p, d.min_p),
            repetition_penalty=pick(body.repetition_penalty, d.repetition_penalty),
            frequency_penalty=body.frequency_penalty or 0.0,
            presence_penalty=body.presence_penalty or 0.0,
            stop=list(body.stop or []),
            seed=body.seed,
        )
    )


def choice_params(params: GenParams, i: int) -> GenParams:
    """Choice i of n: a seeded request gives each choice its own seed (seed + i), so the n
    choices differ and the whole set repeats."""
    if params.seed is None or i == 0:
        return params
    lo, hi = SEED_RANGE
    return GenParams(**{**params.as_dict(), "seed": lo + (params.seed + i - lo) % (hi - lo + 1)})


def logit_bias(body: Any, vocab: int) -> dict[int, float] | None:
    if not body.logit_bias:
        return None
    bias = {int(k): float(v) for k, v in body.logit_bias.items()}
    bad = [k for k in bias if k >= vocab]
    if bad:
        raise APIError(400, f"logit_bias: token id {bad[0]} is outside the vocabulary (size {vocab})", param="logit_bias")
    return bias


def check_length(prompt_len: int, max_tokens: int | None, limit: int, param: str) -> None:
    if prompt_len >= limit or (max_tokens and prompt_len + max_tokens > limit):
        raise APIError(
            400,
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt_len + (max_tokens or 0)} tokens ({prompt_len} in the {param}, {max_tokens or 0} in the completion). "
            f"Please reduce the length of the {param} or completion.",
            param=param,
            code="context_length_exceeded",
        )


def submit_all(served: Any, prompts: list[list[int]], params: GenParams, n: int, **options: Any) -> list[Any]:
    """One engine request per (prompt, choice); all or none: a full queue cancels the ones
    already queued and answers 429 with Retry-After."""
    loop = asyncio.get_running_loop()
    reqs: list[Any] = []
    try:
        for prompt in prompts:
            for i in range(n):
                reqs.append(served.engine.submit(prompt, choice_params(params, i), loop, **options))
    except QueueFull as e:
        for r in reqs:
            r.cancel()
        raise APIError(
            429, str(e), type="rate_limit_error", code="queue_full", headers={"Retry-After": str(served.retry_after)}
        ) from None
    except EngineUnavailable as e:
        for r in reqs:
            r.cancel()
        raise APIError(503, str(e), type="server_error", code="engine_unavailable") from None
    return reqs


# -- chat completions --------------------------------------------------------------------------


def _checked_prompt(body: ChatCompletionRequest, served: Any) -> tuple[list[dict], list[int]]:
    """The request's messages, checked, and their prompt ids (400s name the field)."""
    try:
        messages = validate_messages(body.message_dicts(), field_name="messages", require_assistant=False)
    except DataError as e:
        raise APIError(400, f"{e.field}: {e.message}", param=e.field, code="invalid_messages") from None
    if messages[-1]["role"] != "user":
        raise APIError(400, "messages: the last message must be from the user", param="messages", code="invalid_messages")
    try:
        kwargs = body.chat_template_kwargs
        return messages, served.encode(messages, kwargs) if kwargs else served.encode(messages)
    except Exception as e:  # a format that cannot render these messages (or these template variables)
        raise APIError(400, f"messages: {e}", param="messages", code="invalid_messages") from None


async def chat_request(body: ChatCompletionRequest, served: Any, rules: Any, prefix_default: bool, triage_model: Any = None):
    """Validate a chat request and submit its choices; returns (jobs, prompt, safety info)."""
    refuse_unsupported(body, served.engine)
    if body.top_logprobs is not None and not body.logprobs:
        raise APIError(400, "top_logprobs: needs logprobs: true", param="top_logprobs")
    # Checking and tokenizing a long chat is CPU work: off the event loop, so that one large
    # request does not hold every other one (streams, health checks) while it is read.
    messages, prompt = await asyncio.to_thread(_checked_prompt, body, served)
    limit = served.max_model_len
    max_tokens = body.max_completion_tokens or body.max_tokens
    check_length(len(prompt), max_tokens, limit, "messages")
    params = gen_params(body, served, max_tokens or min(served.default_max_tokens, limit - len(prompt)))
    # The verdict always travels in `safety`; whether its instruction goes into the content
    # is the request's choice (`safety`), else the server's.
    t = rules.triage(last_user_text(messages)) if rules is not None else None
    if t is not None and triage_model is not None:  # bounded by its timeout, then the rules alone
        t = await asyncio.to_thread(triage_model.review, t, last_user_text(messages), rules)
    info = SafetyInfo(urgent=t.urgent, reasons=t.reasons, notice=t.notice, source=t.source, model=t.model) if t else None
    in_content = prefix_default if body.safety is None else body.safety
    if body.response_format is not None and body.response_format.type != "text":
        in_content = False  # the content must parse as JSON: the verdict stays in `safety`
    prefix = t.prefix() if t and in_content else ""
    prefix_tokens = len(served.tokenizer.encode(prefix, add_special_tokens=False)) if prefix and served.tokenizer else 0
    grammar = None
    if body.response_format is not None and body.response_format.type != "text":
        grammar = served.grammar(body.response_format)
    reqs = submit_all(
        served,
        [prompt],
        params,
        body.n or 1,
        ignore_eos=bool(body.ignore_eos),
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        logit_bias=logit_bias(body, served.vocab_size),
        grammar=grammar,
    )
    started = thinking(served, prompt)
    jobs = [Job(i, r, prefix, prefix_tokens, started) for i, r in enumerate(reqs)]
    return jobs, prompt, info, t


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


def thinking(served: Any, prompt: list[int]) -> bool | None:
    """None when the model's chat template has no reasoning (no `</think>` in it); else whether
    this prompt opened a `<think>` block itself (DeepSeek-R1's template does; Qwen3's with
    enable_thinking false closes an empty one), so the reply starts as reasoning."""
    tok = getattr(served, "tokenizer", None)
    if "</think>" not in str(getattr(tok, "chat_template", None) or ""):
        return None
    return tok.decode(prompt[-16:], skip_special_tokens=False).rstrip().endswith("<think>")


def chat_response(served: Any, jobs: list[Job], results: list, prompt_len: int, info: Any) -> dict:
    """A reasoning model's reply (a job `started` not None) has its thinking in
    `reasoning_content`, apart from its `content` (discmed.reasoning.split)."""
    from discmed.reasoning import split

    choices, completion = [], 0
    for job, (text, last, lps) in zip(jobs, results, strict=True):
        completion += last.completion_tokens + job.prefix_tokens
        reasoning, text = split(text, job.started) if job.started is not None else (None, text)
        choices.append(
            Choice(
                index=job.index,
                message=ResponseMessage(content=job.prefix + text, reasoning_content=reasoning),
                logprobs=chat_logprobs(served, lps),
                finish_reason=last.finish_reason,
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
                delta = _join(delta, job.req.out.get_nowait())
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


def _join(a: Delta, b: Delta) -> Delta:
    lps = None if a.logprobs is None and b.logprobs is None else (a.logprobs or []) + (b.logprobs or [])
    return Delta(a.text + b.text, b.finish_reason, b.completion_tokens, b.error, lps, a.prompt_logprobs or b.prompt_logprobs)


def sse_error(message: str) -> str:
    err = ErrorResponse(error=ErrorInfo(message=message, type="server_error"))
    return f"data: {err.model_dump_json()}\n\n"


async def chat_stream(
    served: Any, jobs: list[Job], prompt_len: int, info: Any, include_usage: bool, on_token: Callable
) -> AsyncIterator[str]:
    """A reasoning model's thinking streams as `reasoning_content` deltas, apart from `content`."""
    from discmed.reasoning import StreamSplitter

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
    try:
        for job in jobs:
            yield chunk(job.index, DeltaMessage(role="assistant", content=job.prefix), safety=info)
            completion += job.prefix_tokens
        async for job, delta in merged(jobs):
            if delta.finish_reason == "error":
                yield sse_error(delta.error or "generation failed")
                break
            if job.index in splitters and (delta.text or delta.finish_reason is not None):
                if delta.text:
                    on_token()
                thought, answer = splitters[job.index].feed(delta.text)
                if delta.finish_reason is not None:
                    rest = splitters[job.index].flush()
                    thought, answer = thought + rest[0], answer + rest[1]
                if thought:
                    yield chunk(job.index, DeltaMessage(reasoning_content=thought))
                if answer or delta.logprobs:
                    yield chunk(job.index, DeltaMessage(content=answer), logprobs=chat_logprobs(served, delta.logprobs))
            elif delta.text or delta.logprobs:
                on_token()
                if delta.logprobs is None:
                    yield f'{head}{job.index},"delta":{{"content":{json.dumps(delta.text, ensure_ascii=False)}{tail}'
                else:
                    yield chunk(job.index, DeltaMessage(content=delta.text), logprobs=chat_logprobs(served, delta.logprobs))
            if delta.finish_reason is None:
                continue
            completion += delta.completion_tokens
            yield chunk(job.index, DeltaMessage(), delta.finish_reason if delta.finish_reason in ("stop", "length") else "stop")
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


# -- text completions --------------------------------------------------------------------------


def completion_request(body: CompletionRequest, served: Any):
    """Validate a completions request and submit every (prompt, choice); returns (jobs, prompts)."""
    refuse_unsupported(body, served.engine)
    if served.tokenizer is None:
        raise APIError(400, "prompt: this server's engine does not take raw prompts", param="prompt")
    vocab = served.vocab_size
    prompts: list[list[int]] = []
    for i, p in enumerate(body.prompt):
        if isinstance(p, str):
            ids = served.tokenizer.encode(p, add_special_tokens=True)
        else:
            ids = p
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                raise APIError(400, f"prompt.{i}: token id {bad} is outside the vocabulary (size {vocab})", param="prompt")
        if not ids:
            raise APIError(400, f"prompt.{i}: the prompt is empty", param="prompt")
        check_length(len(ids), body.max_tokens, served.max_model_len, "prompt")
        prompts.append(ids)
    if body.max_tokens == 0 and not body.echo:
        raise APIError(400, "max_tokens: 0 generates nothing; with echo it scores the prompt", param="max_tokens")
    if body.stream and body.echo:
        raise APIError(400, "echo: not supported with stream", param="echo")
    max_tokens = body.max_tokens if body.max_tokens is not None else 16
    params = gen_params(body, served, max_tokens)
    k = body.logprobs
    reqs = submit_all(
        served,
        prompts,
        params,
        body.n or 1,
        ignore_eos=bool(body.ignore_eos),
        logprobs=k,
        prompt_logprobs=k if body.echo and k is not None else None,
        logit_bias=logit_bias(body, vocab),
    )
    return [Job(i, r) for i, r in enumerate(reqs)], prompts


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


async def completion_stream(served: Any, jobs: list[Job], include_usage: bool, on_token: Callable) -> AsyncIterator[str]:
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

    try:
        async for job, delta in merged(jobs):
            if delta.finish_reason == "error":
                yield sse_error(delta.error or "generation failed")
                break
            finish = delta.finish_reason if delta.finish_reason in ("stop", "length", None) else "stop"
            if delta.text:
                on_token()
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
