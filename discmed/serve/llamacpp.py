"""`discmed serve --model X.gguf` (or `--engine llama.cpp`): llama-server behind discmed's front.

The GGUF runs in llama-server (discmed.engine.llamacpp: a child process, continuous batching
over `--max-batch` slots, `--threads` threads); discmed's own front stays in front of it: the
same request validation, safety layer, metrics, request ids, errors and chat page as the hf
engine, prompts built by discmed.formats from the export folder's tokenizer. Structured output
reaches llama.cpp as a JSON schema; prompt logprobs (echo) are refused, llama-server has none.
"""

from __future__ import annotations

from discmed.backends.llamacpp import LlamaCppBackend
from discmed.contract import BackendError, resolve
from discmed.serve.serving import ServedModel


def served_model(spec: str, *, name: str | None = None, format: str | None = None, max_model_len: int | None = None,
                 threads: int | None = None, max_batch: int = 8, max_queue: int = 256,
                 kv_cache: str = "auto") -> ServedModel:  # fmt: skip
    """A ServedModel for a GGUF (`llamacpp:FILE.gguf` or a path ending in .gguf)."""
    ref = resolve(spec)
    if ref.kind != "llamacpp":
        raise BackendError(f"--engine llama.cpp serves a GGUF file (llamacpp:FILE.gguf), not {spec!r}")
    backend = LlamaCppBackend(ref.target, name=name, format=format, max_length=max_model_len, threads=threads,
                              parallel=max_batch, max_queue=max_queue, kv_cache=kv_cache)  # fmt: skip
    fmt, tok = backend.format, backend.tokenizer
    encode = lambda msgs, kw=None: fmt.prompt(msgs, tok, max_length=10**9, reserve=0, template_kwargs=kw)  # noqa: E731
    defaults = backend.default_params()
    return ServedModel(backend.name, backend.engine, encode, backend.max_length, defaults.max_new_tokens, defaults,
                       tokenizer=tok, engine_name="llama.cpp", vocab=len(tok), stop_ids=backend.stop_ids,
                       format=fmt)  # fmt: skip
