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


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

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


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    model: str
    logprobs: bool | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    tool_choice: str | dict | None = None
    tools: list[dict] | None = None
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
    # discmed extras (vLLM's): a reasoning model's thinking, apart from its answer
    reasoning_content: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


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


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    # discmed extras (vLLM's)
    reasoning_content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


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
