"""The OpenAI-compatible API server and web page, as a FastAPI app.

    app = create_app(ServedModel.from_backend(load_backend("tiny")))

Routes: `POST /v1/chat/completions` (streaming and not, `n` choices, logprobs, structured
output, tool calls), `POST /v1/completions`, `POST /v1/responses` (the Responses API's text
subset; what it leaves out is a 501 naming the field), `GET /v1/models[/{id}]`, `POST /tokenize`,
`POST /detokenize`, `GET /version`, `GET /health`, `GET /metrics` (Prometheus),
`GET /openapi.json`, the chat page at `/`. The routes are thin: each calls the app's
`OpenAIServing` (serving.py, built once by `create_app`), whose responses and streams are
built in responses.py. This module routes, guards (request id, body size, API key), and turns
every error a client can cause into a 4xx in OpenAI's error shape (`{"error": {"message",
"type", "param", "code"}}`), never a 500 or a traceback.

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
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import discmed
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
    ResponseObject,
    ResponsesRequest,
    TokenizeRequest,
    TokenizeResponse,
    VersionInfo,
)
from discmed.serve.responses import APIError
from discmed.serve.safety import Rules, load_rules
from discmed.serve.serving import OpenAIServing, ServedModel, Streamed

__all__ = ["ServedModel", "create_app", "header_timeout_protocol"]

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
    501: "A field discmed does not implement on this route (param names it); /v1/responses serves text only",
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


def serving(request: Request) -> OpenAIServing:
    return request.app.state.serving


def respond(result: dict | Streamed | None, request: Request) -> Any:
    """What `OpenAIServing` gives, as a response: a body, a stream that stops its generation the
    moment the client goes away, or 499 (nginx's "client closed request", for the access log)."""
    if result is None:
        return Response(status_code=499)
    if isinstance(result, Streamed):
        return EventStream(result.content, result.jobs, request.app.state.metrics)
    return result


def errors(*codes: int) -> dict:
    """The error responses of a route, for /openapi.json."""
    return {c: {"model": ErrorResponse, "description": ERRORS[c]} for c in codes}


GENERATING = {**errors(400, 401, 404, 413, 429, 500, 503),
              200: {"content": {"text/event-stream": {}}, "description": "A completion, or its stream"}}  # fmt: skip
router = APIRouter()


@router.get("/health")
async def health(request: Request):
    body, alive = serving(request).health()
    return body if alive else JSONResponse(body, status_code=503)


@router.get("/metrics", include_in_schema=False)
async def prometheus(request: Request):
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)


@router.get("/version", response_model=VersionInfo)
async def version(request: Request):
    return serving(request).version()


@router.get("/v1/models", response_model=ModelList, responses=errors(401))
async def models(request: Request):
    return serving(request).models()


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=errors(401, 404))
async def model_card(model_id: str, request: Request):
    return serving(request).model_card(model_id)


@router.post("/tokenize", response_model=TokenizeResponse, responses=errors(400, 404, 413))
async def tokenize(body: TokenizeRequest, request: Request):
    return await serving(request).tokenize(body)


@router.post("/detokenize", response_model=DetokenizeResponse, responses=errors(400, 404, 413))
async def detokenize(body: DetokenizeRequest, request: Request):
    return await serving(request).detokenize(body)


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse, responses=GENERATING)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    return respond(await serving(request).chat(body, request), request)


@router.post("/v1/responses", response_model=ResponseObject, responses={**GENERATING, **errors(501)})
async def responses(body: ResponsesRequest, request: Request):
    return respond(await serving(request).responses(body, request), request)


@router.post("/v1/completions", response_model=CompletionResponse, responses=GENERATING)
async def completions(body: CompletionRequest, request: Request):
    return respond(await serving(request).completion(body, request), request)


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request):
    return JSONResponse(openapi_schema(request.app))


@router.get("/", include_in_schema=False)
async def page():
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


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
    if not access_log.handlers:  # one JSON object a line on stderr, whatever uvicorn's log level
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False
    rules = (rules or load_rules()) if safety else None
    if rules is not None:
        rules.classifier()  # the learned triage layer, trained or loaded now rather than on the first request
    metrics = Metrics(served.engine)
    app.state.served, app.state.metrics = served, metrics
    app.state.serving = OpenAIServing(served, rules=rules, metrics=metrics, urgent_in_content=urgent_in_content,
                                      triage_model=triage_model)  # fmt: skip
    for kind, handler in ERROR_HANDLERS.items():
        app.add_exception_handler(kind, handler)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes, metrics=metrics)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


# -- errors: always OpenAI's shape, never a traceback ------------------------------------------


async def _api_error(request: Request, e: APIError):
    return error_response(e.status, e.message, e.type, e.param, e.code, e.headers)


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
    loc = [x for x in loc if not re.match(r"^(str|int|list\[.*\]|dict\[.*\]|literal\[.*\]|function-.*|[A-Z]\w*)$", x)]
    param = ".".join(loc) or None
    msg = err.get("msg", "invalid request")
    if err.get("type") == "missing":
        msg = "required field is missing"
    elif err.get("type") in ("model_attributes_type", "dict_type") and not loc:
        msg = "request body must be a JSON object"
    return error_response(400, f"{param + ': ' if param else ''}{msg}", param=param, code="invalid_value")


async def _http_error(request: Request, e: StarletteHTTPException):
    code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(e.status_code)
    return error_response(e.status_code, str(e.detail), code=code)


async def _internal(request: Request, e: Exception):
    log.exception("internal error")
    return error_response(500, "internal server error", type="server_error")


ERROR_HANDLERS = {APIError: _api_error, RequestValidationError: _validation_error,
                  StarletteHTTPException: _http_error, Exception: _internal}  # fmt: skip


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


_ROUTES = {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/models", "/tokenize", "/detokenize", "/version",
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
