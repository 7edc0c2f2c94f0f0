"""vLLM's AsyncLLMEngine behind the server's engine contract: `discmed serve --engine vllm`.

Continuous batching, paged KV cache and tensor parallelism behind discmed's API, safety layer
and page. The server's adapter lives here, beside the engine it replaces (`serve/engine.py`);
what it shares with the in-process backend (import, quantization, format, sampling
parameters) comes from `discmed.backends.vllm`, which knows nothing of the server.

Not exercised by the default test suite (no GPU there); written against vLLM's documented API:
`AsyncEngineArgs`, `AsyncLLMEngine.from_engine_args`, `generate(prompt, sampling_params,
request_id)`, `abort(request_id)`.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from discmed.backend import BackendError, GenParams
from discmed.backends.vllm import import_vllm, sampling_params, tokenizer_and_format, vllm_quantization
from discmed.serve.engine import Delta, QueueFull


class _VLLMRequest:
    """One generation on the async engine, as the app's engine contract wants it: Deltas on
    `out`, and `cancel()` to abort it inside vLLM."""

    def __init__(self, engine: Any, prompt_ids: list[int], sp: Any, owner: VLLMEngine):
        self.out: asyncio.Queue = asyncio.Queue()
        self.id = f"discmed-{uuid.uuid4().hex}"
        self._engine, self._owner = engine, owner

        async def run() -> None:
            sent, n, finish = "", 0, None
            try:
                async for res in engine.generate({"prompt_token_ids": prompt_ids}, sp, self.id):
                    o = res.outputs[0]
                    text, n = o.text, len(o.token_ids)  # cumulative output
                    if len(text) > len(sent):
                        self.out.put_nowait(Delta(text[len(sent) :]))
                        sent = text
                    if res.finished:
                        finish = o.finish_reason if o.finish_reason in ("stop", "length") else "stop"
                self.out.put_nowait(Delta("", finish or "stop", n))
            except asyncio.CancelledError:
                await engine.abort(self.id)
                raise
            except Exception as e:  # reported to the client as a server error
                self.out.put_nowait(Delta("", "error", n, error=f"vLLM: {type(e).__name__}: {e}"))
            finally:
                owner.active -= 1

        self._task = asyncio.get_running_loop().create_task(run())

    def cancel(self) -> None:
        if not self._task.done():
            self._task.cancel()


class VLLMEngine:
    """vLLM's AsyncLLMEngine behind the `submit(prompt_ids, params, loop)` contract."""

    def __init__(self, engine: Any, stop_ids: list[int], max_queue: int):
        self.engine, self.stop_ids, self.max_queue = engine, stop_ids, max_queue
        self.active = 0

    @property
    def load(self) -> int:
        return self.active

    def submit(
        self,
        prompt_ids: list[int],
        params: GenParams,
        loop: asyncio.AbstractEventLoop,
        ignore_eos: bool = False,
        **options: Any,  # the app refuses what `features` (none here) lacks; the rest are None
    ) -> _VLLMRequest:
        if self.active >= self.max_queue:
            raise QueueFull(f"the server is busy: {self.active} requests running (limit {self.max_queue})")
        self.active += 1
        sp = sampling_params(params, self.stop_ids, ignore_eos=ignore_eos)
        return _VLLMRequest(self.engine, prompt_ids, sp, self)

    def shutdown(self) -> None:
        stop = getattr(self.engine, "shutdown", None)  # vLLM V1's AsyncLLM; V0 ends with its process
        if stop is not None:
            stop()


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
):
    """A ServedModel for `discmed serve --engine vllm --model SPEC` (hf:PATH, vllm:PATH or PATH)."""
    from discmed.backend import resolve
    from discmed.serve.app import ServedModel

    ref = resolve(spec)
    if ref.kind not in ("tiny", "hf", "vllm"):
        raise BackendError(f"--engine vllm serves a local model or hub id, not {spec!r}")
    kind, path = ref.kind, ref.path
    import_vllm()
    from vllm import AsyncEngineArgs, AsyncLLMEngine

    tokenizer, fmt = tokenizer_and_format(path, format, trust_remote_code)
    args = AsyncEngineArgs(
        model=path,
        tensor_parallel_size=tensor_parallel_size,
        max_model_len=max_model_len,
        trust_remote_code=trust_remote_code,
        **vllm_quantization(quantize),
    )
    engine = AsyncLLMEngine.from_engine_args(args)
    config = getattr(engine, "model_config", None) or engine.engine.model_config  # V1, V0
    limit = max_model_len or config.max_model_len
    stop_ids = fmt.stop_token_ids(tokenizer)
    encode = lambda msgs, kw=None: fmt.prompt(msgs, tokenizer, max_length=10**9, reserve=0, template_kwargs=kw)  # noqa: E731
    served_name = name or ("tiny" if kind == "tiny" else (Path(path).name if Path(path).exists() else path))
    return ServedModel(
        served_name, VLLMEngine(engine, stop_ids, max_queue), encode, int(limit), tokenizer=tokenizer, engine_name="vllm"
    )
