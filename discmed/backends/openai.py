"""The OpenAI-compatible backend: vLLM, SGLang, hosted APIs, and discmed's own server.

Spec: `openai:BASE_URL@MODEL` (the model part may be left out when the server serves one
model). Built on the official `openai` client, sync for `chat`/`stream` and `AsyncOpenAI` for
`achat` (the job engine's way in), whose retries (exponential backoff with jitter on
connection errors, timeouts, 408/409/429 and 5xx; a 400 is not retried) are configured here.
The one case the SDK does not retry is a 200 whose body is empty, cut off or not JSON (a proxy
or an overloaded server dropping the body): that is retried here with the same backoff, then
reported as what it is. Every failure is a `CallError` naming the endpoint, the model, the
status and the server's message, with its kind (unreachable, auth, not_found, context, …).

`check()` asks the endpoint for its models once before a job starts (`GET /models`, one
retry), so a dead server, a URL without `/v1`, a refused key or a wrong model id fails in
seconds instead of once per record. The model's context length (`max_model_len`, which vLLM
and discmed's server list) and `/tokenize` (at the server's root, both have it) let the job
engine count a prompt before sending it (`count_prompt`). Its identity is the base URL and the
server's model id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from discmed.backend import BackendError, CallError, GenParams, Reply
from discmed.chat import Message

log = logging.getLogger("discmed")


def split_target(target: str) -> tuple[str, str | None]:
    """`http://host:port/v1@model` → (base URL, model or None)."""
    base, sep, model = target.rpartition("@")
    if not sep or "/" in model:  # no '@', or the '@' belonged to the URL
        return target, None
    return base, model or None


# How servers word a prompt that does not fit (vLLM, discmed serve, OpenAI, SGLang, llama.cpp).
_CONTEXT = re.compile(r"context[ _]length|maximum context|max_model_len|context window|too long|"
                      r"exceeds? the (?:model|available context)|reduce the length", re.I)


def _server_message(e: Any) -> str:
    """The server's own error message from an SDK status error (its `error.message`, else the body)."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        msg = inner.get("message") if isinstance(inner, dict) else inner
        if msg:
            return str(msg)
    return str(getattr(e, "message", None) or e)


def _backoff(attempt: int) -> float:
    """The SDK's schedule: 0.5 s doubling to at most 8 s, with jitter."""
    return min(0.5 * 2**attempt, 8.0) * (1 - 0.25 * random.random())


def _usage(usage: Any) -> tuple[int | None, int | None]:
    return (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (None, None)


def _bad_body(resp: Any) -> str | None:
    """What is wrong with a 200's body, or None for a chat completion with choices."""
    raw = resp.content
    if not raw.strip():
        return "an empty body"
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        head = raw[:120].decode("utf-8", "replace").replace("\n", " ")
        return f"a body that is not JSON, or is cut off ({len(raw)} bytes: {head!r}…)"
    if not isinstance(data, dict) or not data.get("choices"):
        return f"JSON without choices ({str(data)[:120]})"
    return None


def _reply(content: str | None, message: dict[str, Any], finish_reason: str | None) -> Reply:
    """A chat completion's message as a Reply: its answer apart from its reasoning, which a
    server with a reasoning parser sends as `reasoning_content` (vLLM, SGLang, DeepSeek) or
    `reasoning` (newer vLLM, OpenRouter), and a server without one leaves in `<think>` blocks."""
    from discmed.reasoning import separate

    thought = message.get("reasoning_content") or message.get("reasoning")
    return separate(Reply(content or "", finish_reason), thought if isinstance(thought, str) else None)


def _async_client(options: dict[str, Any]) -> Any:
    """AsyncOpenAI over the SDK's aiohttp transport (the `openai[aiohttp]` extra) where it has
    one, else over httpx."""
    import openai

    try:
        return openai.AsyncOpenAI(**options, http_client=openai.DefaultAioHttpClient())
    except (AttributeError, ImportError, RuntimeError):  # an SDK without it, or its extra missing
        return openai.AsyncOpenAI(**options)


class OpenAIBackend:
    """Chat completions against any OpenAI-compatible base URL."""

    def __init__(
        self,
        target: str,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        max_retries: int = 5,
        concurrency: int = 8,
        name: str | None = None,
    ):
        import openai

        self.base_url, model = split_target(target)
        if not self.base_url.startswith(("http://", "https://")):
            raise BackendError(f"openai backend needs an http(s) base URL, got {self.base_url!r}")
        key = api_key or os.environ.get("DISCMED_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        # discmed's own server puts an urgent-care instruction before a reply it triages as an
        # emergency; every discmed command that calls a model through this backend (doctor,
        # patient, teacher, judge) needs the model's own text, so it asks for the verdict to
        # stay in the `safety` field. A header, not a body field: hosted APIs refuse unknown
        # body fields and ignore unknown headers.
        self.headers = {"X-Discmed-Safety": "off"}
        self._client_options = {"base_url": self.base_url, "api_key": key, "timeout": timeout,
                                "max_retries": max_retries, "default_headers": self.headers}
        self.client = openai.OpenAI(**self._client_options)
        self._aclient: tuple[asyncio.AbstractEventLoop, openai.AsyncOpenAI] | None = None
        self.concurrency = concurrency
        self._model = model
        self.name = name or model or self.base_url
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0}
        self.json_mode = True  # GenParams.json_schema goes out as response_format until refused
        self._usage_lock = threading.Lock()
        self.max_retries = max_retries
        self.context_limit: int | None = None  # the model's context, when the endpoint lists it (check())
        self._tokenize: bool | None = None  # whether the server's /tokenize answers (learned on first use)
        self._checked = False

    @property
    def model(self) -> str:
        if self._model is None:
            models = self._call(lambda: self.client.models.list().data)
            if not models:
                raise BackendError(f"{self.base_url} serves no models")
            self._model = models[0].id
        return self._model

    @property
    def identity(self) -> str:
        return f"openai:{self.base_url.rstrip('/')}@{self.model}"

    def default_params(self) -> GenParams:
        return GenParams()

    def _call(self, fn):
        try:
            return fn()
        except Exception as e:
            raise self._error(e) from e

    def _where(self) -> str:
        return f"{self.base_url} (model {self._model or '?'})"

    def _error(self, e: Exception) -> Exception:
        """The SDK's errors, after its retries, as one `CallError` naming endpoint, model,
        status and the server's message, with its kind."""
        import openai

        where = self._where()
        kw = {"endpoint": self.base_url, "model": self._model}
        if isinstance(e, openai.APITimeoutError):
            return CallError(f"{where} did not answer within the timeout ({e})", kind="timeout", **kw)
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            return CallError(f"cannot reach the OpenAI-compatible endpoint at {self.base_url} ({cause}); "
                             "is the server running? (discmed serve --model SPEC starts one)", kind="unreachable", **kw)
        if isinstance(e, openai.APIStatusError):
            status, msg = e.status_code, _server_message(e)
            if status in (401, 403):
                return CallError(f"{where} refused the API key ({status}: {msg}); set OPENAI_API_KEY "
                                 "(or DISCMED_API_KEY for discmed serve)", kind="auth", status=status, **kw)
            if status == 404:
                return CallError(f"{where} answered 404: {msg} (a wrong model id, or a base URL without /v1?)",
                                 kind="not_found", status=status, **kw)
            if status in (400, 413, 422) and _CONTEXT.search(msg):
                return CallError(f"{where}: too long for this model's context ({status}: {msg})", kind="context",
                                 status=status, **kw)
            kind = "server" if status >= 500 or status == 429 else "bad_request"
            return CallError(f"{where} answered {status}: {msg}", kind=kind, status=status, **kw)
        if isinstance(e, (json.JSONDecodeError, UnicodeDecodeError)) or type(e).__name__ == "APIResponseValidationError":
            return CallError(f"{where} answered 200 with a body that is not the JSON of a chat completion "
                             f"({type(e).__name__}: {e})", kind="bad_body", status=200, **kw)
        return e

    def check(self) -> None:
        """Fail fast, once, before a job: the endpoint answers, takes the key and serves this model.
        Also learns the model's context length where the endpoint lists it."""
        import openai

        if self._checked:
            return
        probe = openai.OpenAI(**{**self._client_options, "max_retries": 1,
                                 "timeout": min(15.0, self._client_options["timeout"])})
        try:
            listed = probe.models.list().data
        except openai.NotFoundError as e:
            raise CallError(f"{self.base_url} answered 404 to GET /models ({_server_message(e)}): is this the API's "
                            "base URL? It usually ends in /v1", kind="not_found", endpoint=self.base_url,
                            model=self._model, status=404) from e
        except openai.APIStatusError as e:
            if e.status_code not in (405, 501):
                raise self._error(e) from e
            log.warning("%s does not list its models (GET /models: %s); the model id is not checked",
                        self.base_url, e.status_code)  # fmt: skip
            self._checked = True
            return
        except Exception as e:
            raise self._error(e) from e
        finally:
            probe.close()
        ids = [m.id for m in listed]
        if self._model is None and ids:
            self._model = ids[0]
        if ids and self._model not in ids:
            shown = ", ".join(ids[:10]) + (" …" if len(ids) > 10 else "")
            raise CallError(f"{self.base_url} does not serve model {self._model!r}; it serves: {shown}",
                            kind="not_found", endpoint=self.base_url, model=self._model, status=404)
        for m in listed:
            if m.id == self._model:
                limit = (getattr(m, "model_extra", None) or {}).get("max_model_len")
                self.context_limit = int(limit) if isinstance(limit, int) and limit > 0 else None
        self._checked = True

    async def count_prompt(self, messages: list[Message]) -> int | None:
        """The prompt's exact token count from the server's `/tokenize` (vLLM and discmed serve
        have it, beside `/v1`), or None where it has none."""
        if self._tokenize is False:
            return None
        import httpx

        root = re.sub(r"/v1/?$", "", self.base_url.rstrip("/"))
        headers = {"Authorization": f"Bearer {self._client_options['api_key']}"}
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                r = await client.post(f"{root}/tokenize", json={"model": self.model, "messages": messages},
                                      headers=headers)
        except httpx.HTTPError:
            return None  # the call itself will say what is wrong with the endpoint
        if r.status_code != 200:
            self._tokenize = False if r.status_code in (404, 405) else self._tokenize
            return None
        self._tokenize = True
        count = r.json().get("count")
        return int(count) if isinstance(count, int) else None

    def _request(self, messages: list[Message], params: GenParams) -> dict[str, Any]:
        req: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": params.max_new_tokens}
        req["temperature"] = params.temperature
        if params.temperature > 0 and params.top_p < 1.0:
            req["top_p"] = params.top_p
        if params.stop:
            req["stop"] = params.stop
        if params.seed is not None:
            req["seed"] = params.seed
        if params.frequency_penalty:
            req["frequency_penalty"] = params.frequency_penalty
        if params.presence_penalty:
            req["presence_penalty"] = params.presence_penalty
        extra = {}
        if params.top_k:
            extra["top_k"] = params.top_k
        if params.min_p:
            extra["min_p"] = params.min_p
        if params.repetition_penalty != 1.0:
            extra["repetition_penalty"] = params.repetition_penalty
        if extra:
            req["extra_body"] = extra  # vLLM and discmed's server read these
        if params.json_schema is not None and self.json_mode:
            req["response_format"] = {"type": "json_schema",
                                      "json_schema": {"name": "reply", "schema": params.json_schema}}
        return req

    def _refuses_json(self, e: Exception, params: GenParams) -> bool:
        """Whether `e` is an endpoint refusing `response_format` (a 400 naming it, as hosted APIs
        that know only json_object, or none, answer). Then this backend stops asking for it
        and the caller sends the request again without: the reply is parsed as prose."""
        import openai

        if params.json_schema is None or not self.json_mode:
            return False
        status = getattr(e, "status_code", None) if isinstance(e, openai.APIStatusError) else None
        if status not in (400, 422) or "response_format" not in str(e):
            return False
        self.json_mode = False
        log.warning("%s refuses response_format (%s); replies are no longer held to a schema, and are parsed as prose",
                    self.base_url, getattr(e, "message", e))  # fmt: skip
        return True

    def _tally(self, prompt_tokens: int | None, completion_tokens: int | None) -> None:
        with self._usage_lock:
            self.usage["requests"] += 1
            self.usage["prompt_tokens"] += prompt_tokens or 0
            self.usage["completion_tokens"] += completion_tokens or 0

    def _create(self, messages: list[Message], params: GenParams, **kw: Any) -> Any:
        try:
            return self.client.chat.completions.create(**self._request(messages, params), **kw)
        except Exception as e:
            if not self._refuses_json(e, params):
                raise self._error(e) from e
        return self._call(lambda: self.client.chat.completions.create(**self._request(messages, params), **kw))

    def _one(self, messages: list[Message], params: GenParams) -> str:
        for attempt in range(self.max_retries + 1):
            try:
                resp = self._create(messages, params)
                if not resp.choices:
                    raise CallError(f"{self._where()} answered 200 with no choices", kind="bad_body", status=200,
                                    endpoint=self.base_url, model=self._model)
                break
            except CallError as e:
                if e.kind != "bad_body" or attempt == self.max_retries:
                    raise
                time.sleep(_backoff(attempt))
        self._tally(*_usage(resp.usage))
        choice = resp.choices[0]
        extra = getattr(choice.message, "model_extra", None) or {}
        return _reply(choice.message.content, extra, choice.finish_reason)

    async def achat(self, messages: list[Message], params: GenParams) -> str:
        """One reply through AsyncOpenAI (one client per event loop: its connections are the loop's).

        The request goes through the client's `post` (its retries, error types and auth) with
        the body `_request` built, over the SDK's aiohttp transport: the typed `create` spends
        several ms per call validating and transforming the body and httpx's pool as much
        again, which at the job engine's 300 requests/s is the whole CPU of a small machine.
        """
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient[0] is not loop:
            self._aclient = (loop, _async_client(self._client_options))
        if self._model is None:
            self._model = await asyncio.to_thread(lambda: self.model)
        data = await self._apost(messages, params)
        usage = data.get("usage") or {}
        self._tally(usage.get("prompt_tokens"), usage.get("completion_tokens"))
        choice = data["choices"][0]
        message = choice.get("message") or {}
        return _reply(message.get("content"), message, choice.get("finish_reason"))

    async def _apost(self, messages: list[Message], params: GenParams) -> dict[str, Any]:
        """POST /chat/completions; the parsed body. A body that is empty, cut off or not a chat
        completion is retried as a 5xx would be (the SDK does not), then reported as such."""
        import httpx

        attempt = 0
        while True:
            body = self._request(messages, params)
            body.update(body.pop("extra_body", {}))
            try:
                resp = await self._aclient[1].post("/chat/completions", body=body, cast_to=httpx.Response)
            except Exception as e:
                if self._refuses_json(e, params):
                    continue  # asked again without the response_format the endpoint refused
                raise self._error(e) from e
            why = _bad_body(resp)
            if why is None:
                return resp.json()
            if attempt >= self.max_retries:
                raise CallError(f"{self._where()} answered {resp.status_code} with {why}, "
                                f"{attempt + 1} times", kind="bad_body", status=resp.status_code,
                                endpoint=self.base_url, model=self._model)
            await asyncio.sleep(_backoff(attempt))
            attempt += 1

    async def aclose(self) -> None:
        """Close the async client of the running loop (the job engine calls this after a run)."""
        if self._aclient is not None:
            client, self._aclient = self._aclient[1], None
            await client.close()

    def chat(self, conversations: list[list[Message]], params: GenParams) -> list[str]:
        if len(conversations) == 1:
            return [self._one(conversations[0], params)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda m: self._one(m, params), conversations))

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        """The answer's text as it comes; reasoning (a `reasoning_content` delta, a `<think>`
        block) is not part of it."""
        from discmed.reasoning import StreamSplitter

        resp = self._create(messages, params, stream=True)
        splitter = StreamSplitter()
        try:
            for chunk in resp:
                if chunk.usage is not None:
                    self._tally(*_usage(chunk.usage))
                if chunk.choices and chunk.choices[0].delta.content:
                    answer = splitter.feed(chunk.choices[0].delta.content)[1]
                    if answer:
                        yield answer
            rest = splitter.flush()[1]
            if rest:
                yield rest
        finally:
            resp.close()  # a closed iterator closes the connection, which stops the server's work

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        raise NotImplementedError(
            "chat completions do not return prompt logprobs: use --mode generate with an API backend, "
            "or a local (hf, vllm) backend for --mode logprob"
        )
