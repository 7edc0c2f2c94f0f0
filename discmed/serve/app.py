"""The OpenAI-compatible API server and web page, as a FastAPI app.

    app = create_app(ServedModel.from_backend(load_backend("tiny")))

Routes: `GET /v1/models`, `POST /v1/chat/completions` (streaming and not), `GET /health`,
the chat page at `/`. Every error a client can cause is a 4xx in OpenAI's error shape
(`{"error": {"message", "type", "param", "code"}}`), never a 500 or a traceback. The red-flag
triage of `discmed.serve.safety` runs on the patient's latest message: an urgent-care
instruction goes before the model's reply, and the standing notice rides along in the
response's `safety` field (a discmed extra).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from discmed.backend import GenParams
from discmed.chat import DataError, validate_messages
from discmed.serve.engine import Delta, QueueFull
from discmed.serve.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    DeltaMessage,
    ErrorInfo,
    ErrorResponse,
    ModelCard,
    ModelList,
    ResponseMessage,
    SafetyInfo,
    UsageInfo,
)
from discmed.serve.safety import Rules, last_user_text, load_rules

log = logging.getLogger("discmed.serve")
STATIC = Path(__file__).with_name("static")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code


def error_response(
    status: int,
    message: str,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(message=message, type=type, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


@dataclass
class ServedModel:
    """What the app serves: a name, a prompt builder and an engine with `submit`.

    `engine.submit(prompt_ids, params, loop)` returns a request with an asyncio `out` queue
    of `Delta`s and a `cancel()`; it raises `QueueFull` when the engine is saturated.
    """

    name: str
    engine: Any
    encode: Callable[[list[dict]], list[int]]  # messages -> prompt ids, no truncation
    max_model_len: int
    default_max_tokens: int = 512
    defaults: GenParams = field(default_factory=lambda: GenParams(temperature=1.0))

    @classmethod
    def from_backend(
        cls, backend: Any, name: str | None = None, *, max_batch: int = 32, max_queue: int = 256
    ) -> ServedModel:
        """Dynamic batching over an hf backend's model (`.model`, `.tokenizer`, `.format`)."""
        from discmed.serve.engine import BatchEngine

        if not hasattr(backend, "model") or not hasattr(backend, "format"):
            raise ValueError(
                f"cannot serve backend {type(backend).__name__}: discmed serves local models (hf, tiny) "
                "or vLLM (--engine vllm); point OpenAI clients at an OpenAI endpoint directly"
            )
        tok, fmt = backend.tokenizer, backend.format
        max_len = int(getattr(backend, "max_length", 0) or 4096)
        engine = BatchEngine(
            backend.model,
            tok,
            fmt.stop_token_ids(tok),
            max_batch=max_batch,
            max_queue=max_queue,
            max_model_len=max_len,
        )
        # No truncation here: a prompt that does not fit is refused with the limit, as OpenAI
        # does, rather than silently losing the start of the conversation.
        encode = lambda msgs: fmt.prompt(msgs, tok, max_length=10**9, reserve=0)  # noqa: E731
        defaults = (
            backend.default_params() if hasattr(backend, "default_params") else GenParams(temperature=1.0)
        )
        return cls(
            name or getattr(backend, "name", "model"),
            engine,
            encode,
            max_len,
            defaults.max_new_tokens,
            defaults,
        )


def create_app(
    served: ServedModel,
    *,
    api_key: str | None = None,
    safety: bool = True,
    rules: Rules | None = None,
    max_body_bytes: int = 1 << 20,
    triage_model=None,
) -> FastAPI:
    app = FastAPI(title="discmed", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served
    rules = (rules or load_rules()) if safety else None
    started = time.time()

    # -- errors: always OpenAI's shape, never a traceback --------------------------------

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return error_response(e.status, e.message, e.type, e.param, e.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        err = e.errors()[0] if e.errors() else {}
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if err.get("type") == "json_invalid":
            return error_response(
                400,
                f"request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}",
                code="invalid_json",
            )
        param = ".".join(loc) or None
        msg = err.get("msg", "invalid request")
        if err.get("type") == "missing":
            msg = "required field is missing"
        elif err.get("type") in ("model_attributes_type", "dict_type") and not loc:
            msg = "request body must be a JSON object"
        return error_response(400, f"{param + ': ' if param else ''}{msg}", param=param, code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(e.status_code)
        return error_response(e.status_code, str(e.detail), code=code)

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception):
        log.exception("internal error")
        return error_response(500, "internal server error", type="server_error")

    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes)

    # -- routes ---------------------------------------------------------------------------

    @app.get("/health")
    async def health():
        eng = served.engine
        return {
            "status": "ok",
            "model": served.name,
            "uptime_s": round(time.time() - started, 1),
            "load": getattr(eng, "load", None),
            "batches": getattr(eng, "batches", None),
            "max_batch_seen": getattr(eng, "max_batch_seen", None),
            "cancelled": getattr(eng, "cancelled", None),
            "safety": bool(rules),
        }

    @app.get("/v1/models")
    async def models():
        return ModelList(data=[ModelCard(id=served.name, max_model_len=served.max_model_len)]).model_dump()

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        if body.model != served.name:
            raise APIError(
                404,
                f"The model `{body.model}` does not exist. This server serves `{served.name}`.",
                param="model",
                code="model_not_found",
            )
        # Fields OpenAI defines that discmed cannot honour are refused, not silently dropped.
        if body.logprobs:
            raise APIError(400, "logprobs: discmed serve does not return logprobs", param="logprobs")
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(body, name):
                raise APIError(
                    400, f"{name}: not supported; use repetition_penalty (a discmed extra)", param=name
                )
        messages = body.message_dicts()
        try:
            messages = validate_messages(messages, field_name="messages", require_assistant=False)
        except DataError as e:
            raise APIError(400, f"{e.field}: {e.message}", param=e.field, code="invalid_messages") from None
        if messages[-1]["role"] != "user":
            raise APIError(
                400,
                "messages: the last message must be from the user",
                param="messages",
                code="invalid_messages",
            )
        try:
            prompt = served.encode(messages)
        except Exception as e:  # a format that cannot render these messages
            raise APIError(400, f"messages: {e}", param="messages", code="invalid_messages") from None
        limit = served.max_model_len
        max_tokens = body.max_completion_tokens or body.max_tokens
        if len(prompt) >= limit or (max_tokens and len(prompt) + max_tokens > limit):
            raise APIError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(prompt) + (max_tokens or 0)} tokens ({len(prompt)} in the messages, {max_tokens or 0} in the completion). "
                "Please reduce the length of the messages or completion.",
                param="messages",
                code="context_length_exceeded",
            )
        # Fields the client leaves out take the model's own defaults (its generation_config),
        # as vLLM does; OpenAI's own defaults (temperature 1) would not suit a greedy model.
        d = served.defaults
        params = GenParams(
            max_new_tokens=max_tokens or min(served.default_max_tokens, limit - len(prompt)),
            temperature=d.temperature if body.temperature is None else body.temperature,
            top_p=d.top_p if body.top_p is None else body.top_p,
            top_k=d.top_k if body.top_k is None else body.top_k,
            repetition_penalty=d.repetition_penalty
            if body.repetition_penalty is None
            else body.repetition_penalty,
            stop=list(body.stop or []),
            seed=body.seed,
        )
        use_safety = rules is not None and body.safety is not False
        t = rules.triage(last_user_text(messages)) if use_safety else None
        if t is not None and triage_model is not None:  # bounded by its timeout, then the rules alone
            t = await asyncio.to_thread(triage_model.review, t, last_user_text(messages), rules)
        info = SafetyInfo(urgent=t.urgent, reasons=t.reasons, notice=t.notice, source=t.source, model=t.model) if t else None
        prefix = t.prefix() if t else ""
        try:
            req = served.engine.submit(
                prompt, params, asyncio.get_running_loop(), ignore_eos=bool(body.ignore_eos)
            )
        except QueueFull as e:
            raise APIError(429, str(e), type="rate_limit_error", code="queue_full") from None
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventStream(
                _stream(req, request, served.name, len(prompt), prefix, info, include_usage),
                req,
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        text, last = await _collect(req, request)
        if last.finish_reason == "cancelled":  # the client went away: nobody is left to answer
            return Response(status_code=499)  # nginx's "client closed request", for the access log
        if last.finish_reason == "error":
            raise APIError(500, last.error or "generation failed", type="server_error")
        usage = UsageInfo(
            prompt_tokens=len(prompt),
            completion_tokens=last.completion_tokens,
            total_tokens=len(prompt) + last.completion_tokens,
        )
        return ChatCompletionResponse(
            model=served.name,
            choices=[
                Choice(message=ResponseMessage(content=prefix + text), finish_reason=last.finish_reason)
            ],
            usage=usage,
            safety=info,
        ).model_dump(exclude_none=False)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class Guard:
    """ASGI middleware: the body-size limit and the API key, before any route runs.

    Pure ASGI rather than `@app.middleware("http")`, which would buffer streamed replies and
    hide a client's disconnect from the stream.
    """

    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.max_body = app, api_key, max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        too_large = f"request body too large (limit {self.max_body} bytes)"
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length and (not length.isdigit() or int(length) > self.max_body):
            return await error_response(413, too_large, code="body_too_large")(scope, receive, send)
        if self.api_key and scope["path"].startswith("/v1/"):
            given = headers.get(b"authorization", b"").decode("latin-1")
            token = given[7:] if given[:7].lower() == "bearer " else ""
            # compare_digest's time does not depend on where the first difference is.
            if not hmac.compare_digest(token.encode(), self.api_key.encode()):
                msg = "invalid or missing API key (send the header Authorization: Bearer KEY)"
                return await error_response(401, msg, type="authentication_error", code="invalid_api_key")(
                    scope, receive, send
                )
        seen = 0

        async def limited() -> dict:
            # A chunked body has no length up front: count it as it arrives.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise HTTPException(413, too_large)  # FastAPI passes its own through
            return message

        await self.app(scope, limited, send)


class EventStream(StreamingResponse):
    """A server-sent-event response that stops its generation the moment the client goes away.

    Starlette notices a disconnect only when a write fails (ASGI 2.4) and leaves the body
    generator to the garbage collector; a request still waiting in the queue writes nothing.
    So this response watches `receive` for the disconnect itself and cancels at once.
    """

    def __init__(self, content: AsyncIterator[str], req: Any, headers: dict[str, str]):
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.req = req

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.req.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await super().__call__(scope, receive, send)
        finally:
            watcher.cancel()
            self.req.cancel()


async def _collect(req: Any, request: Request) -> tuple[str, Delta]:
    """Wait for a whole reply; a client that hangs up cancels its generation (checked every
    half second, whether or not tokens are flowing)."""
    parts: list[str] = []
    check = time.monotonic() + 0.5
    while True:
        try:
            delta: Delta = await asyncio.wait_for(req.out.get(), timeout=max(0.0, check - time.monotonic()))
        except TimeoutError:
            delta = None
        if delta is not None:
            parts.append(delta.text)
            if delta.finish_reason is not None:
                return "".join(parts), delta
        if time.monotonic() >= check:
            check = time.monotonic() + 0.5
            if await request.is_disconnected():
                req.cancel()
                return "".join(parts), Delta("", "cancelled")


async def _stream(
    req: Any,
    request: Request,
    model: str,
    prompt_tokens: int,
    prefix: str,
    info: SafetyInfo | None,
    include_usage: bool,
) -> AsyncIterator[str]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: DeltaMessage, finish: str | None = None, **extra: Any) -> str:
        c = ChatCompletionChunk(
            id=cid,
            created=created,
            model=model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish)],
            **extra,
        )
        return f"data: {c.model_dump_json(exclude_none=True)}\n\n"

    # Content chunks are the hot path (one per token): built from a fixed head, not pydantic.
    head = (
        f'data: {{"id":"{cid}","object":"chat.completion.chunk","created":{created},"model":{json.dumps(model)},'
        '"choices":[{"index":0,"delta":{"content":'
    )
    tail = '},"finish_reason":null}]}\n\n'
    try:
        yield chunk(DeltaMessage(role="assistant", content=prefix), safety=info)
        while True:
            delta: Delta = await req.out.get()
            # Under load several tokens may be waiting: send them as one chunk.
            while delta.finish_reason is None and not req.out.empty():
                more = req.out.get_nowait()
                delta = Delta(delta.text + more.text, more.finish_reason, more.completion_tokens, more.error)
            if delta.finish_reason == "error":
                err = ErrorResponse(
                    error=ErrorInfo(message=delta.error or "generation failed", type="server_error")
                )
                yield f"data: {err.model_dump_json()}\n\n"
                break
            if delta.text:
                yield head + json.dumps(delta.text, ensure_ascii=False) + tail
            if delta.finish_reason is None:
                continue
            yield chunk(
                DeltaMessage(), delta.finish_reason if delta.finish_reason in ("stop", "length") else "stop"
            )
            if include_usage:
                n = delta.completion_tokens
                usage = UsageInfo(
                    prompt_tokens=prompt_tokens, completion_tokens=n, total_tokens=prompt_tokens + n
                )
                c = ChatCompletionChunk(id=cid, created=created, model=model, choices=[], usage=usage)
                yield f"data: {c.model_dump_json(exclude_none=True)}\n\n"
            break
        yield "data: [DONE]\n\n"
    finally:
        # Runs when the stream ends and when the client disconnects (Starlette cancels the
        # generator): either way the engine stops spending steps on this request.
        req.cancel()
