"""The serving logic behind the routes: a validated request → engine streams → a response.

`OpenAIServing` is built once per app (as vLLM's `OpenAIServingChat`) over a `ServedModel` (a
name, a prompt builder and an engine behind discmed.engine's typed contract); `app.py`'s routes
only call it. A request object gives its own sampling parameters (`to_params`); what a field
asks for that discmed cannot do is refused here with a 400 that names the field, never
silently dropped. `responses.py` turns the engine's deltas into OpenAI's responses and streams.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import discmed
from discmed.backend import GenParams
from discmed.chat import DataError, validate_messages
from discmed.engine.core import LocalEngine
from discmed.engine.proc import ProcessEngine
from discmed.engine.protocol import Engine, EngineUnavailable, QueueFull, Request, Stream
from discmed.engine.sampler import SEED_RANGE
from discmed.serve import responses_api, tooling
from discmed.serve.metrics import Metrics
from discmed.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    DetokenizeResponse,
    ModelCard,
    ModelList,
    ResponseFormat,
    ResponsesRequest,
    SafetyInfo,
    TokenizeRequest,
    TokenizeResponse,
    VersionInfo,
)
from discmed.serve.responses import (
    APIError,
    Job,
    Streamed,
    chat_response,
    chat_stream,
    collect_all,
    completion_response,
    completion_stream,
)
from discmed.serve.safety import Rules, last_user_text
from discmed.structured import GrammarError, Grammars

# Fields of OpenAI's API that change what a reply is and that discmed does not do: refused.
UNSUPPORTED = {
    "functions": "the deprecated form of function calling; send `tools` (and `tool_choice`) instead",
    "function_call": "the deprecated form of function calling; send `tool_choice` (and `tools`) instead",
    "audio": "discmed serves text models",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
}


@dataclass
class ServedModel:
    """What the app serves: a name, a prompt builder, and an engine (discmed.engine.protocol's
    `Engine`: `submit(Request, loop)` → a stream of `Delta`s, `abort`, `stats`, `features`,
    `shutdown`). A request for an option the engine's `features` lack is refused with a 400."""

    name: str
    engine: Engine
    encode: Callable[..., list[int]]  # (messages, chat_template_kwargs=None) -> prompt ids, no truncation
    max_model_len: int
    default_max_tokens: int = 512
    defaults: GenParams = field(default_factory=lambda: GenParams(temperature=1.0))
    tokenizer: Any = None  # for /v1/completions, /tokenize, logprob token strings
    engine_name: str = "hf"
    vocab: int | None = None  # the model's output size (logit_bias, token ids), else the tokenizer's
    stop_ids: list[int] = field(default_factory=list)  # the format's end-of-turn tokens (for grammars)
    format: Any = None  # the chat format (discmed.formats): tool calls are rendered in its convention

    @classmethod
    def from_backend(
        cls, backend: Any, name: str | None = None, *, max_batch: int = 32, max_queue: int = 256,
        engine_process: ProcessEngine | None = None, prefix_cache_mb: int = 256,
    ) -> ServedModel:
        """The engine over an hf backend's model (`.model`, `.tokenizer`, `.format`).

        `engine_process`: an engine started in a child process from the same spec and load options
        (discmed.engine.proc), which may still be loading; this process keeps the tokenizer and
        prompt format (the backend may be one loaded without its weights)."""
        if not hasattr(backend, "model") or not hasattr(backend, "format"):
            raise ValueError(
                f"cannot serve backend {type(backend).__name__}: discmed serves local models (hf, tiny) "
                "or vLLM (--engine vllm); point OpenAI clients at an OpenAI endpoint directly"
            )
        tok, fmt = backend.tokenizer, backend.format
        max_len = int(getattr(backend, "max_length", 0) or 4096)
        stop_ids = fmt.stop_token_ids(tok)
        engine: Engine
        if engine_process is not None:
            import gc

            backend.model = None  # a meta-device model, or weights this process no longer needs
            gc.collect()
            engine = engine_process.wait_ready()
            vocab = engine.vocab
        else:
            engine = LocalEngine(backend.model, tok, stop_ids, max_batch=max_batch, max_queue=max_queue,
                                 max_model_len=max_len, prefix_cache_mb=prefix_cache_mb)  # fmt: skip
            vocab = engine.vocab
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
            vocab=vocab,
            stop_ids=stop_ids,
            format=fmt,
        )

    @property
    def vocab_size(self) -> int:
        return int(self.vocab) if self.vocab else len(self.tokenizer)

    @property
    def retry_after(self) -> int:
        return self.engine.stats().retry_after

    @cached_property
    def grammars(self):
        """Structured-output grammars for this model's tokenizer: response formats are compiled
        here, and the engine builds each request's matcher from the compiled grammar."""
        return Grammars(self.tokenizer, self.vocab_size, self.stop_ids)

    def grammar(self, response_format: Any) -> str:
        """The compiled grammar of a response_format (cached by its JSON); 400 when it has none."""
        key = response_format.model_dump_json(by_alias=True)
        try:
            return _compile(self.grammars, key)
        except GrammarError as e:
            raise APIError(400, str(e), param=e.param, code="invalid_response_format") from None

    def schema_grammar(self, schema: dict, param: str) -> str:
        """The compiled grammar of a JSON schema (a tool's arguments; cached by its JSON); 400 naming
        `param` when it has none."""
        try:
            # Not sort_keys: the grammar writes an object's properties in the schema's order.
            return _compile_schema(self.grammars, json.dumps(schema), param)
        except GrammarError as e:
            raise APIError(400, str(e), param=e.param if e.param != "response_format" else param,
                           code="invalid_tool_schema") from None  # fmt: skip

    def token_text(self, token_id: int) -> tuple[str, bytes]:
        """A token as text and as the bytes it stands for (a byte-level token may be part of
        a character: its text is then the replacement character, its bytes are exact)."""
        return _token_text(self.tokenizer, token_id)


@lru_cache(maxsize=64)
def _compile(grammars: Any, key: str) -> str:
    return grammars.compile(ResponseFormat.model_validate(json.loads(key)))


@lru_cache(maxsize=64)
def _compile_schema(grammars: Any, key: str, param: str) -> str:
    return grammars.schema_grammar(json.loads(key), param)


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


# -- building requests -------------------------------------------------------------------------


def refuse_unsupported(body: Any, engine: Engine) -> None:
    """400 for every field set in `body` that discmed would otherwise have to ignore."""
    extra = body.model_extra or {}
    for name, why in UNSUPPORTED.items():
        if extra.get(name) not in (None, [], {}):
            raise APIError(400, f"{name}: {why}", param=name)
    modalities = extra.get("modalities")
    if modalities not in (None, ["text"]):
        raise APIError(400, "modalities: discmed serves text only", param="modalities")
    if getattr(body, "suffix", None):
        raise APIError(400, "suffix: insertion (fill in the middle) is not supported", param="suffix")
    features = engine.features
    wants_logprobs = bool(getattr(body, "logprobs", None) is not None and body.logprobs is not False)
    if wants_logprobs and "logprobs" not in features:
        raise APIError(400, "logprobs: not supported by this server's engine", param="logprobs")
    rf = getattr(body, "response_format", None)
    if rf is not None and rf.type != "text" and "structured_output" not in features:
        raise APIError(400, "response_format: not supported by this server's engine", param="response_format")
    if body.logit_bias and "logprobs" not in features:
        raise APIError(400, "logit_bias: not supported by this server's engine", param="logit_bias")


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


def submit_all(served: ServedModel, prompts: list[list[int]], params: GenParams, n: int, **options: Any) -> list[Stream]:
    """One engine request per (prompt, choice); all or none: a full queue cancels the ones
    already queued and answers 429 with Retry-After."""
    loop = asyncio.get_running_loop()
    reqs: list[Stream] = []
    try:
        for prompt in prompts:
            for i in range(n):
                reqs.append(served.engine.submit(Request(prompt, choice_params(params, i), **options), loop))
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


def _checked_prompt(body: ChatCompletionRequest, served: ServedModel,
                    plan: tooling.ToolPlan | None) -> tuple[list[dict], list[int]]:  # fmt: skip
    """The request's messages, checked, and their prompt ids (400s name the field). A chat that
    shows tools or carries tool calls and results is rendered in the format's tool-call
    convention; any other goes through the format's own prompt, as it always has."""
    shown = plan.shown if plan is not None else None
    if shown or tooling.has_tool_messages(body):
        messages = tooling.checked_messages(body, served)
        try:
            return messages, tooling.prompt(served, messages, shown, body.chat_template_kwargs)
        except APIError:
            raise
        except Exception as e:  # a template that cannot render these messages (or these variables)
            raise APIError(400, f"messages: {e}", param="messages", code="invalid_messages") from None
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


def thinking(served: ServedModel, prompt: list[int]) -> bool | None:
    """None when the model's chat template has no reasoning (no `</think>` in it); else whether
    this prompt opened a `<think>` block itself (DeepSeek-R1's template does; Qwen3's with
    enable_thinking false closes an empty one), so the reply starts as reasoning."""
    tok = getattr(served, "tokenizer", None)
    if "</think>" not in str(getattr(tok, "chat_template", None) or ""):
        return None
    return tok.decode(prompt[-16:], skip_special_tokens=False).rstrip().endswith("<think>")


class OpenAIServing:
    """Everything the routes do, built once per app: the served model, the safety rules (None:
    off), the metrics, whether an urgent instruction goes into `content` by default, and the
    optional second-opinion triage model."""

    def __init__(self, served: ServedModel, *, rules: Rules | None, metrics: Metrics, urgent_in_content: bool = True,
                 triage_model: Any = None):  # fmt: skip
        self.served, self.rules, self.metrics = served, rules, metrics
        self.urgent_in_content, self.triage_model = urgent_in_content, triage_model
        self.started = time.time()

    def check_model(self, model: str | None) -> None:
        if model is not None and model != self.served.name:
            raise APIError(404, f"The model `{model}` does not exist. This server serves `{self.served.name}`.",
                           param="model", code="model_not_found")  # fmt: skip

    # -- probes and model listing -----------------------------------------------------------

    def health(self) -> tuple[dict, bool]:
        """The health body, and whether the engine can serve (a 503 otherwise, so that a
        supervisor or load balancer restarts it)."""
        st = self.served.engine.stats()
        body = {
            "status": "ok" if st.alive else "engine down", "model": self.served.name,
            "uptime_s": round(time.time() - self.started, 1), "load": st.load, "batches": st.batches,
            "max_batch_seen": st.max_batch_seen, "cancelled": st.cancelled, "failed": st.failed,
            "engine_pid": st.pid,  # with the engine in a process of its own
            "safety": bool(self.rules),
        }  # fmt: skip
        return body, st.alive

    def version(self) -> VersionInfo:
        return VersionInfo(version=discmed.__version__, model=self.served.name, engine=self.served.engine_name)

    def models(self) -> ModelList:
        return ModelList(data=[self.model_card(None)])

    def model_card(self, model_id: str | None) -> ModelCard:
        self.check_model(model_id)
        return ModelCard(id=self.served.name, max_model_len=self.served.max_model_len)

    # -- tokens -------------------------------------------------------------------------------

    async def tokenize(self, body: TokenizeRequest) -> TokenizeResponse:
        self.check_model(body.model)
        if self.served.tokenizer is None:
            raise APIError(400, "this server's engine does not expose its tokenizer")
        if (body.prompt is None) == (body.messages is None):
            raise APIError(400, "give exactly one of prompt and messages", param="prompt")
        # Tokenizing a megabyte is CPU work: in a thread, not in the event loop every request shares.
        ids = await asyncio.to_thread(self._tokenize, body)
        return TokenizeResponse(count=len(ids), max_model_len=self.served.max_model_len, tokens=ids)

    def _tokenize(self, body: TokenizeRequest) -> list[int]:
        if body.prompt is not None:
            return self.served.tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens)
        msgs = [{"role": m.role, "content": m.text_content()} for m in body.messages]
        try:
            return self.served.encode(msgs)
        except Exception as e:
            raise APIError(400, f"messages: {e}", param="messages") from None

    async def detokenize(self, body: DetokenizeRequest) -> DetokenizeResponse:
        self.check_model(body.model)
        served = self.served
        if served.tokenizer is None:
            raise APIError(400, "this server's engine does not expose its tokenizer")
        bad = next((t for t in body.tokens if not 0 <= t < served.vocab_size), None)
        if bad is not None:
            raise APIError(400, f"tokens: token id {bad} is outside the vocabulary (size {served.vocab_size})",
                           param="tokens")  # fmt: skip
        return DetokenizeResponse(prompt=await asyncio.to_thread(served.tokenizer.decode, body.tokens))

    # -- generation ---------------------------------------------------------------------------

    async def chat(self, body: ChatCompletionRequest, request: Any) -> dict | Streamed | None:
        """A chat completion: the response body, a stream to send, or None when the client went
        away before it was done (the access log's 499)."""
        self.check_model(body.model)
        if body.safety is None and request.headers.get("x-discmed-safety", "").lower() in ("off", "0", "false"):
            body.safety = False  # discmed's openai backend: the verdict in `safety`, not in content
        jobs, prompt, info, verdict = await self._chat_jobs(body)
        request.state.jobs = jobs  # for the access log's ttft_ms
        self.metrics.verdict(verdict)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return Streamed(chat_stream(self.served, jobs, len(prompt), info, include_usage), jobs)
        results = await collect_all(jobs, request.is_disconnected)
        self.metrics.observe_jobs(jobs)
        if any(last.finish_reason == "cancelled" for _, last, _ in results):
            return None
        return chat_response(self.served, jobs, results, len(prompt), info)

    async def responses(self, body: ResponsesRequest, request: Any) -> dict | Streamed | None:
        """/v1/responses: the chat path under the Responses API's names (responses_api)."""
        return await responses_api.create(self, body, request)

    async def completion(self, body: CompletionRequest, request: Any) -> dict | Streamed | None:
        """A text completion, as `chat`."""
        self.check_model(body.model)
        jobs, prompts = self._completion_jobs(body)
        request.state.jobs = jobs
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return Streamed(completion_stream(self.served, jobs, include_usage), jobs)
        results = await collect_all(jobs, request.is_disconnected)
        self.metrics.observe_jobs(jobs)
        if any(last.finish_reason == "cancelled" for _, last, _ in results):
            return None
        return completion_response(self.served, body, jobs, results, prompts)

    async def _chat_jobs(self, body: ChatCompletionRequest) -> tuple[list[Job], list[int], SafetyInfo | None, Any]:
        """Validate a chat request and submit its choices: (jobs, prompt ids, safety info, verdict)."""
        served, rules, triage_model = self.served, self.rules, self.triage_model
        refuse_unsupported(body, served.engine)
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs: needs logprobs: true", param="top_logprobs")
        # Checking and tokenizing a long chat is CPU work: off the event loop, so that one large
        # request does not hold every other one (streams, health checks) while it is read.
        plan = tooling.plan(body, served)
        messages, prompt = await asyncio.to_thread(_checked_prompt, body, served, plan)
        limit = served.max_model_len
        max_tokens = body.max_completion_tokens or body.max_tokens
        check_length(len(prompt), max_tokens, limit, "messages")
        params = body.to_params(served.defaults, max_tokens or min(served.default_max_tokens, limit - len(prompt)))
        # The verdict always travels in `safety`; whether its instruction goes into the content
        # is the request's choice (`safety`), else the server's.
        t = rules.triage(last_user_text(messages)) if rules is not None else None
        if t is not None and triage_model is not None:  # bounded by its timeout, then the rules alone
            t = await asyncio.to_thread(triage_model.review, t, last_user_text(messages), rules)
        info = SafetyInfo(urgent=t.urgent, reasons=t.reasons, notice=t.notice, source=t.source, model=t.model) if t else None
        in_content = self.urgent_in_content if body.safety is None else body.safety
        if body.response_format is not None and body.response_format.type != "text":
            in_content = False  # the content must parse as JSON: the verdict stays in `safety`
        if plan is not None and plan.forced:
            in_content = False  # the reply is a call (content null): the verdict stays in `safety`
        prefix = t.prefix() if t and in_content else ""
        prefix_tokens = len(served.tokenizer.encode(prefix, add_special_tokens=False)) if prefix and served.tokenizer else 0
        grammar = plan.grammar if plan is not None else None
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
        reader = plan.reader if plan is not None else None
        jobs = [Job(i, r, prefix, prefix_tokens, started, reader() if reader else None) for i, r in enumerate(reqs)]
        return jobs, prompt, info, t

    def _completion_jobs(self, body: CompletionRequest) -> tuple[list[Job], list[list[int]]]:
        """Validate a completions request and submit every (prompt, choice): (jobs, prompt ids)."""
        served = self.served
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
        if body.echo and body.logprobs is not None and "prompt_logprobs" not in served.engine.features:
            raise APIError(400, f"echo: the prompt's logprobs are not available from this server's engine "
                           f"({served.engine_name} scores no prompt tokens)", param="echo")
        max_tokens = body.max_tokens if body.max_tokens is not None else 16
        params = body.to_params(served.defaults, max_tokens)
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
