"""The one contract everything that talks to a language model goes through.

The teacher in data construction, the doctor in chat and serve, the patient and the judge in
evaluation: all are a `Backend`, picked by one model-spec string.

    load_backend("tiny")                                  # the embedded default, built on first use
    load_backend("hf:Flmc/DISC-MedLLM")                   # transformers: hub id or local folder
    load_backend("/path/to/model")                        # a bare path means hf
    load_backend("openai:http://127.0.0.1:8000/v1@tiny")  # any OpenAI-compatible endpoint
    load_backend("vllm:/path/to/model")                   # in-process vLLM (optional extra, GPU)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from discmed.chat import Message


@dataclass
class GenParams:
    """Sampling parameters shared by every backend. `temperature == 0` means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BackendError(RuntimeError):
    """A backend that cannot do what was asked, with the reason."""


class Backend(Protocol):
    name: str

    def chat(self, conversations: list[list[Message]], params: GenParams) -> list[str]: ...

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]: ...

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]: ...


def apply_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; returns (text, whether a stop string was found)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def parse_spec(spec: str) -> tuple[str, str]:
    """`kind:target` → (kind, target); `tiny` and bare paths are hf."""
    if spec == "tiny":
        return "tiny", ""
    kind, sep, target = spec.partition(":")
    if sep and kind in BACKENDS:
        return kind, target
    return "hf", spec


def _load_hf(target: str, **options: Any) -> Backend:
    from discmed.backends.hf import HFBackend

    return HFBackend(target, **options)


def _load_tiny(target: str, **options: Any) -> Backend:
    from discmed.backends.hf import HFBackend
    from discmed.tiny import ensure_tiny

    return HFBackend(str(ensure_tiny()), name="tiny", **options)


def _load_openai(target: str, **options: Any) -> Backend:
    from discmed.backends.openai import OpenAIBackend

    return OpenAIBackend(target, **options)


def _load_vllm(target: str, **options: Any) -> Backend:
    from discmed.backends.vllm import VLLMBackend

    return VLLMBackend(target, **options)


BACKENDS = {"hf": _load_hf, "tiny": _load_tiny, "openai": _load_openai, "vllm": _load_vllm}


def load_backend(spec: str, **options: Any) -> Backend:
    """The backend a model-spec string names; `options` go to its constructor."""
    kind, target = parse_spec(spec)
    return BACKENDS[kind](target, **options)
