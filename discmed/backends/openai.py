"""The OpenAI-compatible backend: vLLM, SGLang, hosted APIs, and discmed's own server.

Spec: `openai:BASE_URL@MODEL` (the model part may be left out when the server serves one
model). Built on the official `openai` client, sync for `chat`/`stream` and `AsyncOpenAI` for
`achat` (the job engine's way in), whose retries (exponential backoff with jitter on
connection errors, timeouts, 408/409/429 and 5xx; a 400 is not retried) are configured here
and are the only retries discmed makes. An endpoint that cannot be reached gives one clear
message. Its identity is the base URL and the server's model id.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from discmed.backend import BackendError, GenParams
from discmed.chat import Message

log = logging.getLogger("discmed")


def split_target(target: str) -> tuple[str, str | None]:
    """`http://host:port/v1@model` → (base URL, model or None)."""
    base, sep, model = target.rpartition("@")
    if not sep or "/" in model:  # no '@', or the '@' belonged to the URL
        return target, None
    return base, model or None


def _usage(usage: Any) -> tuple[int | None, int | None]:
    return (usage.prompt_tokens, usage.completion_tokens) if usage is not None else (None, None)


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

    def _error(self, e: Exception) -> Exception:
        """The SDK's errors, after its retries, as one clear BackendError."""
        import openai

        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            return BackendError(
                f"cannot reach the OpenAI-compatible endpoint at {self.base_url} ({cause}); "
                "is the server running? (discmed serve --model SPEC starts one)"
            )
        if isinstance(e, openai.APIStatusError):
            return BackendError(f"{self.base_url} answered {e.status_code}: {e.message}")
        return e

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
        resp = self._create(messages, params)
        self._tally(*_usage(resp.usage))
        return resp.choices[0].message.content or ""

    async def achat(self, messages: list[Message], params: GenParams) -> str:
        """One reply through AsyncOpenAI (one client per event loop: its connections are the loop's).

        The request goes through the client's `post` (its retries, error types and auth) with
        the body `_request` built, over the SDK's aiohttp transport: the typed `create` spends
        several ms per call validating and transforming the body and httpx's pool as much
        again, which at the job engine's 300 requests/s is the whole CPU of a small machine.
        """
        import httpx

        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient[0] is not loop:
            self._aclient = (loop, _async_client(self._client_options))
        if self._model is None:
            self._model = await asyncio.to_thread(lambda: self.model)
        data = None
        for _ in range(2):  # a second time only without a response_format the endpoint refused
            body = self._request(messages, params)
            body.update(body.pop("extra_body", {}))
            try:
                resp = await self._aclient[1].post("/chat/completions", body=body, cast_to=httpx.Response)
                data = resp.json()
                break
            except Exception as e:
                if not self._refuses_json(e, params):
                    raise self._error(e) from e
        usage = data.get("usage") or {}
        self._tally(usage.get("prompt_tokens"), usage.get("completion_tokens"))
        return (data["choices"][0]["message"].get("content") or "") if data.get("choices") else ""

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
        resp = self._create(messages, params, stream=True)
        try:
            for chunk in resp:
                if chunk.usage is not None:
                    self._tally(*_usage(chunk.usage))
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            resp.close()  # a closed iterator closes the connection, which stops the server's work

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        raise NotImplementedError(
            "chat completions do not return prompt logprobs: use --mode generate with an API backend, "
            "or a local (hf, vllm) backend for --mode logprob"
        )
