"""Wire format of the OpenAI-compatible API: pydantic models in OpenAI's field order.

Fields OpenAI defines come first, in the order of OpenAI's API reference; discmed's own
additions come after a `# discmed extras` line in each model. Every field discmed uses is
checked here, with the ranges that keep generation computable (a seed within 64 bits, no
NaN or infinity, text that is valid Unicode), so a bad value is a 400 naming the field,
never a 500 from deep inside generation. Unknown fields are kept (`model_extra`): the ones
OpenAI defines that would change the reply and that discmed cannot do (`functions`,
`audio`, ...) are refused by `serving.refuse_unsupported`; others (`metadata`, `store`)
do not change a reply and pass.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from discmed.backend import GenParams
from discmed.engine.sampler import normalized

# ---------------------------------------------------------------------------- requests

SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1  # what a torch generator can be seeded with


def _utf8(v: str, what: str = "text") -> str:
    # JSON may carry a lone surrogate ("\ud800"), which no tokenizer can encode.
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode (a lone surrogate)") from None
    return v


class TextPart(BaseModel):
    """A content part; discmed serves text models, so text is the only kind it takes."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        return _utf8(v)


class FunctionCall(BaseModel):
    """A call's function: its name and its arguments, as a JSON text (OpenAI's shape)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    arguments: str


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant: the calls it made
    tool_call_id: str | None = None  # tool: the call this is the result of

    @field_validator("content")
    @classmethod
    def _content(cls, v):
        return _utf8(v) if isinstance(v, str) else v

    def text_content(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


# Caps that keep one request from holding the server: a chat of more messages than any context
# holds, or a schema nested past what a grammar compiler (or a serializer's recursion) survives.
MAX_MESSAGES = 1024
MAX_SCHEMA_DEPTH = 32


def json_depth(value: Any, limit: int) -> int:
    """How deep `value` nests (dicts and lists), counted without recursion and stopping past `limit`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


class JSONSchemaFormat(BaseModel):
    name: str = Field(default="schema", max_length=64)
    description: str | None = None
    # `schema` shadows a BaseModel attribute in pydantic; the wire name is kept by alias.
    schema_: dict | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _depth(cls, v):
        if v is not None and json_depth(v, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
            raise ValueError(f"nested deeper than {MAX_SCHEMA_DEPTH} levels")
        return v


# OpenAI's rule for function names; a name is also written into prompts and grammars as it is.
TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=TOOL_NAME)
    description: str | None = None
    parameters: dict | None = None  # a JSON schema of the arguments object; none: no arguments
    strict: bool | None = None  # discmed always decodes a forced call to the schema

    @field_validator("parameters")
    @classmethod
    def _depth(cls, v):
        if v is not None and json_depth(v, MAX_SCHEMA_DEPTH) > MAX_SCHEMA_DEPTH:
            raise ValueError(f"nested deeper than {MAX_SCHEMA_DEPTH} levels")
        return v


class ChatCompletionTool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: NamedFunction


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class SamplingFields(BaseModel):
    """The sampling fields chat and text completions share, with their safe ranges."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, populate_by_name=True)

    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    n: int | None = Field(default=1, ge=1, le=16)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    stop: str | list[str] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    user: str | None = Field(default=None, max_length=256)
    # discmed extras (vLLM's names)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=1000.0)
    ignore_eos: bool | None = None  # as vLLM's: generate max_tokens even past the end token

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> list[str]:
        if v is None:
            return []
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return [_utf8(s, "a stop sequence") for s in stops]

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        for k, b in (v or {}).items():
            if not k.isdigit():
                raise ValueError(f"keys are token ids, got {k!r}")
            if not -100 <= b <= 100:
                raise ValueError(f"bias for token {k} must be within [-100, 100]")
        return v

    def to_params(self, defaults: GenParams, max_tokens: int) -> GenParams:
        """The request's sampling parameters (as vLLM's `to_sampling_params`): fields the client
        left out take the model's own defaults (its generation_config); values too small to
        compute become their safe equivalents (`sampler.normalized`), as vLLM treats a
        temperature below 1e-5."""
        pick = lambda v, default: default if v is None else v  # noqa: E731
        return normalized(GenParams(
            max_new_tokens=max_tokens,
            temperature=pick(self.temperature, defaults.temperature),
            top_p=pick(self.top_p, defaults.top_p),
            top_k=pick(self.top_k, defaults.top_k),
            min_p=pick(self.min_p, defaults.min_p),
            repetition_penalty=pick(self.repetition_penalty, defaults.repetition_penalty),
            frequency_penalty=self.frequency_penalty or 0.0,
            presence_penalty=self.presence_penalty or 0.0,
            stop=list(self.stop or []),
            seed=self.seed,
        ))  # fmt: skip


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    model: str
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    parallel_tool_calls: bool | None = None  # false: at most one call (a forced call is always one)
    response_format: ResponseFormat | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    tools: list[ChatCompletionTool] | None = Field(default=None, max_length=128)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # discmed extras
    # Whether the urgent-care instruction of the triage is put before the reply in `content`.
    # The verdict itself always travels in the response's `safety` field. None: the server's
    # setting (on for people); discmed's own openai backend sends False (evaluation, judges).
    safety: bool | None = None
    # vLLM's: variables for the model's chat template (Qwen3's and Baichuan-M2's
    # {"enable_thinking": false} turns thinking off); a built-in format has none to set.
    chat_template_kwargs: dict | None = None

    def message_dicts(self) -> list[dict]:
        return [{"role": m.role, "content": m.text_content()} for m in self.messages]


class CompletionRequest(SamplingFields):
    """/v1/completions: a prompt (a string, strings, token ids or lists of them) continued
    as raw text, no chat format. `echo` with `logprobs` and `max_tokens: 0` scores a text,
    which is how lm-evaluation-harness computes loglikelihoods."""

    model: str
    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: int | None = Field(default=None, ge=1, le=1)
    echo: bool | None = False
    logprobs: int | None = Field(default=None, ge=0, le=20)
    max_tokens: int | None = Field(default=16, ge=0)
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v):
        if isinstance(v, str):
            return [_utf8(v, "the prompt")]
        if not v:
            raise ValueError("must not be empty")
        if isinstance(v[0], int):
            return [v]
        for p in v:
            if isinstance(p, str):
                _utf8(p, "a prompt")
            elif not p:
                raise ValueError("a token-id prompt must not be empty")
        return v


class TokenizeRequest(BaseModel):
    """/tokenize (as vLLM's): a prompt, or messages rendered with the chat format."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, max_length=MAX_MESSAGES)
    add_special_tokens: bool = True

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v):
        return None if v is None else _utf8(v, "the prompt")


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    tokens: list[int]


# ---------------------------------------------------------------------------- responses


class UsageInfo(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class SafetyInfo(BaseModel):
    """discmed extra: the red-flag triage of the patient's latest message."""

    urgent: bool
    reasons: list[str]
    notice: str
    source: str = "rules"  # "rules+model" when a --triage-model verdict was used
    model: dict | None = None  # that model's answer: urgent, reason, status, seconds


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobInfo(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobInfo] | None = None


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    # discmed extras (vLLM's): a reasoning model's thinking, apart from its answer
    reasoning_content: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChatCompletionResponse(BaseModel):
    id: str = Field(default_factory=_completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: UsageInfo
    system_fingerprint: str | None = None
    # discmed extras
    safety: SafetyInfo | None = None


class DeltaFunctionCall(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    """A piece of a streamed call: the first has its id, type and name; the rest carry
    fragments of the arguments, joined by `index`."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunctionCall | None = None


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None
    # discmed extras (vLLM's)
    reasoning_content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length", "tool_calls"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageInfo | None = None
    system_fingerprint: str | None = None
    # discmed extras
    safety: SafetyInfo | None = None


class CompletionLogprobs(BaseModel):
    """The legacy completions shape (lm-eval reads `token_logprobs` and `top_logprobs`)."""

    text_offset: list[int] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    tokens: list[str] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class CompletionResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"cmpl-{uuid.uuid4().hex}")
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo
    system_fingerprint: str | None = None


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    prompt: str


class VersionInfo(BaseModel):
    version: str
    model: str
    engine: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "discmed"
    # discmed extras
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


# ---------------------------------------------------------------------------- /v1/responses


class ResponsesRequest(BaseModel):
    """OpenAI's Responses API, the text subset discmed serves: `input` (a string, or messages
    whose content is text), `instructions`, `max_output_tokens`, `temperature`, `top_p`,
    `stream`. The fields below that ask for more (tools, stored or background responses,
    reasoning settings, non-text formats) are declared so that discmed can refuse them by name
    (a 501, responses_api.refuse); others it does not know of are kept (`model_extra`)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    background: bool | None = None
    include: list[str] | None = None
    input: str | list[dict]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    max_tool_calls: int | None = None
    metadata: dict[str, str] | None = None
    model: str
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    reasoning: dict | None = None
    store: bool | None = None
    stream: bool | None = False
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    text: dict | None = None
    tool_choice: str | dict | None = None
    tools: list[dict] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = Field(default=None, max_length=256)
    # discmed extras
    safety: bool | None = None  # as in chat completions: the urgent instruction in the text or not
    ignore_eos: bool | None = None  # as vLLM's: generate max_output_tokens even past the end token

    @field_validator("input", "instructions")
    @classmethod
    def _text(cls, v):
        if isinstance(v, str):
            return _utf8(v)
        if isinstance(v, list) and not v:
            raise ValueError("must not be empty")
        if isinstance(v, list) and len(v) > MAX_MESSAGES:
            raise ValueError(f"at most {MAX_MESSAGES} items")
        return v


class ResponseOutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list = Field(default_factory=list)
    logprobs: list = Field(default_factory=list)


class ResponseOutputMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    content: list[ResponseOutputText] = Field(default_factory=list)


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: dict = Field(default_factory=lambda: {"cached_tokens": 0, "cache_write_tokens": 0})
    output_tokens: int
    output_tokens_details: dict = Field(default_factory=lambda: {"reasoning_tokens": 0})
    total_tokens: int


class ResponseObject(BaseModel):
    id: str = Field(default_factory=lambda: f"resp_{uuid.uuid4().hex}")
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=lambda: int(time.time()))
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    error: dict | None = None
    incomplete_details: dict | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[ResponseOutputMessage] = Field(default_factory=list)
    parallel_tool_calls: bool = False
    previous_response_id: str | None = None
    reasoning: dict = Field(default_factory=lambda: {"effort": None, "summary": None})
    store: bool = False
    temperature: float | None = None
    text: dict = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: str = "none"
    tools: list = Field(default_factory=list)
    top_p: float | None = None
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict = Field(default_factory=dict)
    # discmed extras
    safety: SafetyInfo | None = None
