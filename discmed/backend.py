"""The one way to get a model: `load_backend(spec)`, a `Backend` behind a model-spec string.

The teacher in data construction, the doctor in chat and serve, the patient and the judge in
evaluation: all are a `Backend` (discmed.contract), picked by one model-spec string.

    load_backend("tiny")                                  # the embedded default, built on first use
    load_backend("hf:Flmc/DISC-MedLLM")                   # transformers: hub id or local folder
    load_backend("/path/to/model")                        # a bare path means hf
    load_backend("openai:http://127.0.0.1:8000/v1@tiny")  # any OpenAI-compatible endpoint
    load_backend("vllm:/path/to/model")                   # in-process vLLM (optional extra, GPU)
    load_backend("llamacpp:/path/to/model.q8_0.gguf")     # llama-server (a .gguf path means it too)

Beside `chat` (batched), `stream` and `choice_logprobs`, every backend has `achat`, one async
call (the job engine's way in: the official AsyncOpenAI client for APIs, a request joining the
engine's running batch for local models, discmed.engine), and an `identity` that changes when
the weights do: a fingerprint of a local folder's config and weight files, a hub revision, an
API's base URL and model id. Caches and journals key on `identity`, never on `name`, so a model
retrained in place is never answered from the old one's results.

The contract's names (GenParams, Reply, CallError, resolve, …) live in discmed.contract and are
importable from here too.
"""

from __future__ import annotations

from typing import Any

from discmed.backends.hf import HFBackend
from discmed.backends.llamacpp import LlamaCppBackend
from discmed.backends.openai import OpenAIBackend
from discmed.backends.vllm import VLLMBackend
from discmed.contract import (  # noqa: F401  (the contract's names, importable from here as they always were)
    KINDS,
    Backend,
    BackendError,
    CallError,
    GenParams,
    ModelRef,
    Reply,
    SpecError,
    adapter_base,
    check_spec,
    cut_off,
    fingerprint,
    model_identity,
    parse_spec,
    resolve,
    split_target,
    too_long,
)


def load_backend(spec: str, **options: Any) -> Backend:
    """The backend a model-spec string names; `options` go to its constructor."""
    ref = resolve(spec)
    if ref.kind == "openai":
        return OpenAIBackend(ref.target, **options)
    if ref.kind == "vllm":
        return VLLMBackend(ref.target, **options)
    if ref.kind == "llamacpp":
        return LlamaCppBackend(ref.target, **options)
    if ref.kind == "tiny":
        return HFBackend(ref.path, name="tiny", **options)
    return HFBackend(ref.target, **options)
