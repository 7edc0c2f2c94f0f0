"""`discmed serve --engine vllm`: the vLLM backend's engine (`discmed.engine.vllm`) behind the
server — continuous batching, paged KV cache and tensor parallelism under discmed's API,
safety layer and page."""

from __future__ import annotations

from discmed.backend import BackendError, resolve
from discmed.backends.vllm import VLLMBackend, import_vllm
from discmed.serve.serving import ServedModel


def served_model(
    spec: str,
    *,
    name: str | None = None,
    quantize: str | None = None,
    max_model_len: int | None = None,
    tensor_parallel_size: int = 1,
    format: str | None = None,
    max_queue: int = 256,
    trust_remote_code: bool = False,
) -> ServedModel:
    """A ServedModel for `discmed serve --engine vllm --model SPEC` (hf:PATH, vllm:PATH or PATH)."""
    ref = resolve(spec)
    if ref.kind not in ("tiny", "hf", "vllm"):
        raise BackendError(f"--engine vllm serves a local model or hub id, not {spec!r}")
    import_vllm()
    backend = VLLMBackend(ref.path, name=name or ref.name, format=format, quantize=quantize,
                          max_length=max_model_len, tensor_parallel_size=tensor_parallel_size, max_queue=max_queue,
                          trust_remote_code=trust_remote_code)  # fmt: skip
    fmt, tok = backend.format, backend.tokenizer
    encode = lambda msgs, kw=None: fmt.prompt(msgs, tok, max_length=10**9, reserve=0, template_kwargs=kw)  # noqa: E731
    return ServedModel(backend.name, backend.engine, encode, backend.max_length, tokenizer=tok, engine_name="vllm",
                       vocab=len(tok), stop_ids=backend.stop_ids, format=fmt)  # fmt: skip
