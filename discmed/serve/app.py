"""The OpenAI-compatible API server and web page, as a FastAPI app.

    app = create_app(ServedModel.from_backend(load_backend("tiny")))

Routes: `POST /v1/chat/completions` and `POST /v1/completions` (streaming and not, `n`
choices, logprobs, structured output), `GET /v1/models[/{id}]`, `POST /tokenize`,
`POST /detokenize`, `GET /version`, `GET /health`, `GET /metrics` (Prometheus),
`GET /openapi.json`, the chat page at `/`. The serving logic is in `serving.py`; this module
routes, and turns every error a client can cause into a 4xx in OpenAI's error shape
(`{"error": {"message", "type", "param", "code"}}`), never a 500 or a traceback.

Safety: the red-flag triage of `discmed.serve.safety` runs on the patient's latest message
and its verdict travels in every chat response's `safety` field (a discmed extra). Whether
the urgent-care instruction is also put before the reply in `content` is a choice: on by
default (people read `content`), off per request with `"safety": false` or the header
`X-Discmed-Safety: off` (evaluation: an exam answer or a judge's score must be the model's
own text); discmed's openai backend sends that header on every call. When the instruction
is in `content`, its tokens count in `usage`.

Every response carries `X-Request-Id` (the client's, or one made here); the access log is
one JSON object per request on the `discmed.access` logger, with the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import discmed
from discmed.backend import GenParams
from discmed.serve import serving
from discmed.serve.metrics import Metrics
from discmed.serve.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    DetokenizeRequest,
    DetokenizeResponse,
    ErrorInfo,
    ErrorResponse,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
    VersionInfo,
)
from discmed.serve.safety import Rules, load_rules
from discmed.serve.serving import APIError

log = logging.getLogger("discmed.serve")
access_log = logging.getLogger("discmed.access")
STATIC = Path(__file__).with_name("static")

# The errors the API answers, documented in /openapi.json on every route that can give them.
ERRORS = {
    400: "Invalid request: a field's value, a prompt too long for the context, or a field discmed cannot honour (param names it)",
    401: "Missing or wrong API key (when the server has one)",
    404: "Unknown model or route",
    413: "Request body too large",
    429: "The server's queue is full; retry after the Retry-After header's seconds",
    500: "Generation failed on the server",
    503: "The engine cannot take requests (its process has died); restart the server",
}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def error_response(
    status: int,
    message: str,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorInfo(message=message, type=type, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


@dataclass
class ServedModel:
    """What the app serves: a name, a prompt builder and an engine with `submit`.

    `engine.submit(prompt_ids, params, loop, ignore_eos, **options)` returns a request with
    an asyncio `out` queue of `Delta`s and a `cancel()`; it raises `QueueFull` when the
    engine is saturated. `engine.features` says which options it takes (logprobs,
    prompt_logprobs, structured_output); requests for others are refused with a 400.
    """

    name: str
    engine: Any
    encode: Callable[..., list[int]]  # (messages, chat_template_kwargs=None) -> prompt ids, no truncation
    max_model_len: int
    default_max_tokens: int = 512
    defaults: GenParams = field(default_factory=lambda: GenParams(temperature=1.0))
    tokenizer: Any = None  # for /v1/completions, /tokenize, logprob token strings
    engine_name: str = "hf"

    @classmethod
    def from_backend(
        cls, backend: Any, name: str | None = None, *, max_batch: int = 32, max_queue: int = 256,
        engine_process: tuple[str, dict[str, Any]] | None = None,
    ) -> ServedModel:
        """Dynamic batching over an hf backend's model (`.model`, `.tokenizer`, `.format`).

        `engine_process` = (spec, load options): the engine runs in a child process that loads
        the model from the same spec (discmed.serve.engine_proc); this process keeps the
        tokenizer and prompt format (the backend may be one loaded without its weights)."""
        from discmed.serve.engine import BatchEngine

        if not hasattr(backend, "model") or not hasattr(backend, "format"):
            raise ValueError(
                f"cannot serve backend {type(backend).__name__}: discmed serves local models (hf, tiny) "
                "or vLLM (--engine vllm); point OpenAI clients at an OpenAI endpoint directly"
            )
        tok, fmt = backend.tokenizer, backend.format
        max_len = int(getattr(backend, "max_length", 0) or 4096)
        if engine_process is not None:
            import gc

            from discmed.serve.engine_proc import ProcessEngine

            backend.model = None  # a meta-device model, or weights this process no longer needs
            gc.collect()
            spec, options = engine_process
            engine = ProcessEngine(spec, options, tok, max_batch=max_batch, max_queue=max_queue, max_model_len=max_len)
        else:
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
        encode = lambda msgs, kw=None: fmt.prompt(msgs, tok, max_length=10**9, reserve=0, template_kwargs=kw)  # noqa: E731
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
            tokenizer=tok,
        )

    @property
    def vocab_size(self) -> int:
        v = getattr(self.engine, "vocab", None)
        return int(v) if v else len(self.tokenizer)

    @property
    def retry_after(self) -> int:
        return int(getattr(self.engine, "retry_after", 1))

    @property
    def grammars(self):
        return self.engine.grammars  # the engine's own, which its matchers use

    def grammar(self, response_format: Any) -> str:
        """The compiled grammar of a response_format (cached by its JSON); 400 when it has none."""
        from discmed.structured import GrammarError

        key = response_format.model_dump_json(by_alias=True)
        try:
            return _compile(self.grammars, key)
        except GrammarError as e:
            raise APIError(400, str(e), param=e.param, code="invalid_response_format") from None

    def token_text(self, token_id: int) -> tuple[str, bytes]:
        """A token as text and as the bytes it stands for (a byte-level token may be part of
        a character: its text is then the replacement character, its bytes are exact)."""
        return _token_text(self.tokenizer, token_id)


@lru_cache(maxsize=64)
def _compile(grammars: Any, key: str) -> str:
    from discmed.serve.protocol import ResponseFormat

    return grammars.compile(ResponseFormat.model_validate(json.loads(key)))


_BYTE_DECODER: dict[str, int] | None = None


@lru_cache(maxsize=1 << 16)
def _token_text(tokenizer: Any, token_id: int) -> tuple[str, bytes]:
    global _BYTE_DECODER
    if _BYTE_DECODER is None:
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        _BYTE_DECODER = {c: b for b, c in bytes_to_unicode().items()}
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if piece is not None and all(c in _BYTE_DECODER for c in piece):
        raw = bytes(_BYTE_DECODER[c] for c in piece)
    else:
        raw = tokenizer.decode([int(token_id)]).encode("utf-8")
    return raw.decode("utf-8", errors="replace"), raw


def create_app(
    served: ServedModel,
    *,
    api_key: str | None = None,
    safety: bool = True,
    rules: Rules | None = None,
    max_body_bytes: int = 1 << 20,
    urgent_in_content: bool = True,
    triage_model=None,
) -> FastAPI:
    """The app. `safety` runs the triage (its verdict in every chat response);
    `urgent_in_content` is the default for putting its instruction into `content`;
    `triage_model` (--triage-model) gives the rules' verdict a second opinion."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        # The server is shutting down (SIGTERM, Ctrl+C): the engine, its thread or its process,
        # ends in order with it, before uvicorn hands the signal back to the process.
        await asyncio.to_thread(served.engine.shutdown)

    app = FastAPI(title="discmed", version=discmed.__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)  # fmt: skip
    app.state.served = served
    if not access_log.handlers:  # one JSON object a line on stderr, whatever uvicorn's log level
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False
    rules = (rules or load_rules()) if safety else None
    if rules is not None:
        rules.classifier()  # the learned triage layer, trained or loaded now rather than on the first request
    metrics = app.state.metrics = Metrics(served.engine)
    started = time.time()

    # -- errors: always OpenAI's shape, never a traceback --------------------------------

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        return error_response(e.status, e.message, e.type, e.param, e.code, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        # A union reports one error per member; the deepest one names the field best
        # (`messages.0.content.0.text`, not `messages.0.content`).
        err = max(e.errors(), key=lambda x: len(x.get("loc", ())), default={})
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if err.get("type") == "json_invalid":
            return error_response(
                400,
                f"request body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}",
                code="invalid_json",
            )
        # pydantic names union members in the path (`content.list[TextPart].0.text`); clients
        # know only the field names.
        loc = [x for x in loc if not re.match(r"^(str|int|list\[.*\]|dict\[.*\]|function-.*|[A-Z]\w*)$", x)]
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

    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes, metrics=metrics)

    def check_model(model: str | None) -> None:
        if model is not None and model != served.name:
            raise APIError(
                404,
                f"The model `{model}` does not exist. This server serves `{served.name}`.",
                param="model",
                code="model_not_found",
            )

    errors = lambda *codes: {c: {"model": ErrorResponse, "description": ERRORS[c]} for c in codes}  # noqa: E731
    generating = errors(400, 401, 404, 413, 429, 500, 503)

    # -- routes ---------------------------------------------------------------------------

    @app.get("/health")
    async def health():
        eng = served.engine
        alive = bool(getattr(eng, "alive", True))
        body = {
            "status": "ok" if alive else "engine down",
            "model": served.name,
            "uptime_s": round(time.time() - started, 1),
            "load": getattr(eng, "load", None),
            "batches": getattr(eng, "batches", None),
            "max_batch_seen": getattr(eng, "max_batch_seen", None),
            "cancelled": getattr(eng, "cancelled", None),
            "failed": getattr(eng, "failed", None),
            "engine_pid": getattr(eng, "pid", None),  # with --engine-process
            "safety": bool(rules),
        }
        # 503 once the engine cannot serve, so that a supervisor or load balancer restarts it.
        return body if alive else JSONResponse(body, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/version", response_model=VersionInfo)
    async def version():
        return VersionInfo(version=discmed.__version__, model=served.name, engine=served.engine_name)

    @app.get("/v1/models", response_model=ModelList, responses=errors(401))
    async def models():
        return ModelList(data=[ModelCard(id=served.name, max_model_len=served.max_model_len)])

    @app.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=errors(401, 404))
    async def model_card(model_id: str):
        check_model(model_id)
        return ModelCard(id=served.name, max_model_len=served.max_model_len)

    @app.post("/tokenize", response_model=TokenizeResponse, responses=errors(400, 404, 413))
    async def tokenize(body: TokenizeRequest):
        check_model(body.model)
        if served.tokenizer is None:
            raise APIError(400, "this server's engine does not expose its tokenizer")
        if (body.prompt is None) == (body.messages is None):
            raise APIError(400, "give exactly one of prompt and messages", param="prompt")
        # Tokenizing a megabyte is CPU work: in a thread, not in the event loop every request shares.
        ids = await asyncio.to_thread(_tokenize, served, body)
        return TokenizeResponse(count=len(ids), max_model_len=served.max_model_len, tokens=ids)

    @app.post("/detokenize", response_model=DetokenizeResponse, responses=errors(400, 404, 413))
    async def detokenize(body: DetokenizeRequest):
        check_model(body.model)
        if served.tokenizer is None:
            raise APIError(400, "this server's engine does not expose its tokenizer")
        bad = next((t for t in body.tokens if not 0 <= t < served.vocab_size), None)
        if bad is not None:
            raise APIError(400, f"tokens: token id {bad} is outside the vocabulary (size {served.vocab_size})", param="tokens")
        return DetokenizeResponse(prompt=await asyncio.to_thread(served.tokenizer.decode, body.tokens))

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletionResponse,
        responses={**generating, 200: {"content": {"text/event-stream": {}}, "description": "A completion, or its stream"}},
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        check_model(body.model)
        if body.safety is None and request.headers.get("x-discmed-safety", "").lower() in ("off", "0", "false"):
            body.safety = False  # discmed's openai backend: the verdict in `safety`, not in content
        jobs, prompt, info, verdict = await serving.chat_request(body, served, rules, urgent_in_content, triage_model)
        request.state.jobs = jobs  # for the access log's ttft_ms
        metrics.verdict(verdict)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            stream = serving.chat_stream(served, jobs, len(prompt), info, include_usage, lambda: None)
            return EventStream(stream, jobs, metrics)
        results = await serving.collect_all(jobs, request.is_disconnected)
        metrics.observe_jobs(jobs)
        if any(last.finish_reason == "cancelled" for _, last, _ in results):
            return Response(status_code=499)  # nginx's "client closed request", for the access log
        return serving.chat_response(served, jobs, results, len(prompt), info)

    @app.post(
        "/v1/completions",
        response_model=CompletionResponse,
        responses={**generating, 200: {"content": {"text/event-stream": {}}, "description": "A completion, or its stream"}},
    )
    async def completions(body: CompletionRequest, request: Request):
        check_model(body.model)
        jobs, prompts = serving.completion_request(body, served)
        request.state.jobs = jobs
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return EventStream(serving.completion_stream(served, jobs, include_usage, lambda: None), jobs, metrics)
        results = await serving.collect_all(jobs, request.is_disconnected)
        metrics.observe_jobs(jobs)
        if any(last.finish_reason == "cancelled" for _, last, _ in results):
            return Response(status_code=499)
        return serving.completion_response(served, body, jobs, results, prompts)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi():
        return JSONResponse(openapi_schema(app))

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _tokenize(served: ServedModel, body: TokenizeRequest) -> list[int]:
    if body.prompt is not None:
        return served.tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens)
    msgs = [{"role": m.role, "content": m.text_content()} for m in body.messages]
    try:
        return served.encode(msgs)
    except Exception as e:
        raise APIError(400, f"messages: {e}", param="messages") from None


def openapi_schema(app: FastAPI) -> dict:
    """FastAPI's schema without its 422: discmed answers a bad body with a 400 (documented)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                             description="discmed's OpenAI-compatible API. Errors are OpenAI-shaped: "
                             '{"error": {"message", "type", "param", "code"}}.')  # fmt: skip
        for path in schema.get("paths", {}).values():
            for op in path.values():
                op.get("responses", {}).pop("422", None)
                if "429" in op.get("responses", {}):
                    op["responses"]["429"]["headers"] = {
                        "Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}
                    }
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


class Guard:
    """ASGI middleware, before any route runs: the request id, the body-size limit and the
    API key; after: the access log line and the request metrics.

    Pure ASGI rather than `@app.middleware("http")`, which would buffer streamed replies and
    hide a client's disconnect from the stream.
    """

    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int, metrics: Metrics):
        self.app, self.api_key, self.max_body, self.metrics = app, api_key, max_body_bytes, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        start = time.perf_counter()
        status = [0]

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self._guarded(scope, receive, send_with_id, headers)
        finally:
            path = scope["path"]
            route = path if path in _ROUTES else ("/v1/models/{id}" if path.startswith("/v1/models/") else "other")
            seconds = time.perf_counter() - start
            self.metrics.requests.labels(route, str(status[0] or 499)).inc()
            if route != "other":
                self.metrics.latency.labels(route).observe(seconds)
            if path not in ("/health", "/metrics"):
                line = {
                    "ts": round(time.time(), 3), "request_id": rid, "method": scope.get("method"), "path": path,
                    "status": status[0] or 499, "latency_ms": round(seconds * 1e3, 1),
                    "client": (scope.get("client") or ["?"])[0],
                }  # fmt: skip
                # The server's own time to first token (request in → first token out of the
                # engine), apart from the client's and the network's: where a slow TTFT is.
                firsts = [j.req.first_token_at for j in scope["state"].get("jobs") or ()
                          if getattr(j.req, "first_token_at", None) is not None]  # fmt: skip
                if firsts:
                    line["ttft_ms"] = round((min(firsts) - start) * 1e3, 1)
                access_log.info(json.dumps(line))

    async def _guarded(self, scope: dict, receive: Callable, send: Callable, headers: dict) -> None:
        too_large = f"request body too large (limit {self.max_body} bytes)"
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length and (not length.isdigit() or int(length) > self.max_body):
            return await error_response(413, too_large, code="body_too_large")(scope, receive, send)
        if self.api_key and not _public(scope["path"]):
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


def _public(path: str) -> bool:
    """What answers without the API key: the chat page and its files (the page asks for the key
    and sends it with every API call), and the health and version probes of a load balancer.
    Everything else — the API, /tokenize, /detokenize, /metrics, /openapi.json — needs it."""
    return path in ("/", "/health", "/version", "/favicon.ico") or path.startswith("/static/")


_ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/tokenize", "/detokenize", "/version",
           "/health", "/metrics", "/openapi.json", "/"}  # fmt: skip


class EventStream(StreamingResponse):
    """A server-sent-event response that stops its generation the moment the client goes away.

    Starlette notices a disconnect only when a write fails (ASGI 2.4) and leaves the body
    generator to the garbage collector; a request still waiting in the queue writes nothing.
    So this response watches `receive` for the disconnect itself and cancels at once.
    """

    def __init__(self, content: Any, jobs: list, metrics: Metrics):
        super().__init__(
            content, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        self.jobs, self.metrics = jobs, metrics

    def cancel(self) -> None:
        for j in self.jobs:
            j.req.cancel()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        import asyncio

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            self.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await super().__call__(scope, receive, send)
        finally:
            watcher.cancel()
            self.cancel()
            self.metrics.observe_jobs(self.jobs)


def header_timeout_protocol(seconds: float) -> Any:
    """uvicorn's httptools protocol with a deadline on a request's headers: a connection that
    has not sent a whole request head within `seconds` of connecting (or of starting its next
    request) is closed. uvicorn closes idle keep-alive connections but waits forever on one
    that sends its headers a byte at a time, so a few hundred such clients hold every socket
    (slowloris). Returns the protocol class for `uvicorn.Config(http=...)`, or "auto" where
    httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return "auto"

    class HeaderDeadline(HttpToolsProtocol):
        _deadline: Any = None

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(seconds, self._too_slow)

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

    return HeaderDeadline
