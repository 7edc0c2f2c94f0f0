"""vLLM, in process: `load_backend("vllm:PATH")` and `discmed serve --engine vllm`.

An optional extra (`pip install discmed[vllm]`, a CUDA GPU); vllm is imported only when one of
these is built, so nothing else in discmed needs it. Prompts are built by discmed's own chat
formats and handed to vLLM as token ids, so a model is served exactly as it was trained, the
same as on the hf backend.

- `VLLMBackend`: the Backend contract over `vllm.LLM` (offline batched generation; the
  teacher, patient or judge of a large data or eval run). `stream` yields the whole reply at
  once: `vllm.LLM` has no streaming (the server uses the async engine below for that).
- `served_model(...)`: what `discmed serve --engine vllm` serves: vLLM's `AsyncLLMEngine`
  (continuous batching, paged KV cache, tensor parallelism) behind discmed's API, safety
  layer and page.

Not exercised by the test suite (no GPU there); written against vLLM's documented API:
`AsyncEngineArgs`, `AsyncLLMEngine.from_engine_args`, `generate(prompt, sampling_params,
request_id)`, `abort(request_id)`, `SamplingParams`, `TokensPrompt`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from discmed.backend import BackendError, GenParams, apply_stop
from discmed.chat import Message


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise BackendError(
            "the vllm engine needs the optional extra and a CUDA GPU: pip install 'discmed[vllm]'"
        ) from e
    return vllm


def _quantization(quantize: str | None) -> dict[str, Any]:
    # vLLM quantizes with bitsandbytes in flight to 4 bits only; an 8-bit model is served from
    # a pre-quantized copy (`discmed quantize`), whose config vLLM reads by itself.
    if not quantize:
        return {}
    if quantize == "int4":
        return {"quantization": "bitsandbytes"}
    if quantize == "int8":
        raise BackendError(
            "vLLM quantizes in flight to 4 bits only (--quantize int4); for 8 bits serve a copy "
            "written by `discmed quantize --quantize int8`"
        )
    raise BackendError(f"unknown quantization {quantize!r} (expected int8 or int4)")


def _tokenizer_and_format(path: str, format: str | None, trust_remote_code: bool):
    from transformers import AutoTokenizer, GenerationConfig

    from discmed.backends.hf import pick_format

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    try:
        gc = GenerationConfig.from_pretrained(path)
    except OSError:
        gc = None
    holder = type("ModelFiles", (), {"generation_config": gc})()  # pick_format reads only this
    return tokenizer, pick_format(holder, tokenizer, format)


def sampling_params(params: GenParams, stop_token_ids: list[int], **extra: Any):
    """discmed's GenParams as vLLM SamplingParams."""
    from vllm import SamplingParams

    return SamplingParams(
        n=1,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k if params.top_k > 0 else -1,
        min_p=params.min_p,
        repetition_penalty=params.repetition_penalty,
        max_tokens=params.max_new_tokens,
        stop=list(params.stop) or None,
        stop_token_ids=stop_token_ids,
        seed=params.seed,
        **extra,
    )


class VLLMBackend:
    """The Backend contract over `vllm.LLM`."""

    def __init__(
        self,
        path: str,
        *,
        name: str | None = None,
        format: str | None = None,
        quantize: str | None = None,
        max_length: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        trust_remote_code: bool = False,
        **_: Any,
    ):
        vllm = _import_vllm()
        self.path = path
        self.name = name or (Path(path).name if Path(path).exists() else path)
        self.tokenizer, self.format = _tokenizer_and_format(path, format, trust_remote_code)
        self.llm = vllm.LLM(
            model=path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_length,
            trust_remote_code=trust_remote_code,
            **_quantization(quantize),
        )
        self.max_length = max_length or self.llm.llm_engine.model_config.max_model_len
        self.stop_ids = self.format.stop_token_ids(self.tokenizer)

    def _prompt(self, messages: list[Message], params: GenParams) -> dict:
        ids = self.format.prompt(
            messages, self.tokenizer, max_length=self.max_length, reserve=params.max_new_tokens
        )
        return {"prompt_token_ids": ids}  # a vllm.inputs.TokensPrompt

    def chat(self, conversations: list[list[Message]], params: GenParams) -> list[str]:
        prompts = [self._prompt(m, params) for m in conversations]
        outs = self.llm.generate(prompts, sampling_params(params, self.stop_ids), use_tqdm=False)
        return [apply_stop(o.outputs[0].text, params.stop)[0] for o in outs]

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        yield from self.chat([messages], params)

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        """log P(choice | prompt) from vLLM's prompt logprobs of `prompt + choice`."""
        from vllm import SamplingParams

        encode = lambda s: self.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        jobs, spans = [], []
        for prompt in prompts:
            ctx = encode(prompt)
            for choice in choices:
                whole = encode(prompt + choice)
                if whole[: len(ctx)] != ctx:
                    whole = ctx + encode(choice)
                jobs.append({"prompt_token_ids": whole})
                spans.append((len(ctx), whole))
        # prompt_logprobs=0: the logprob of each prompt token itself, nothing more.
        outs = self.llm.generate(jobs, SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
        scores = []
        for out, (start, ids) in zip(outs, spans, strict=True):
            lps = out.prompt_logprobs
            scores.append(sum(lps[j][ids[j]].logprob for j in range(start, len(ids))))
        n = len(choices)
        return [scores[i * n : (i + 1) * n] for i in range(len(prompts))]


class _VLLMRequest:
    """One generation on the async engine, as the app's engine contract wants it: Deltas on
    `out`, and `cancel()` to abort it inside vLLM."""

    def __init__(self, engine: Any, prompt_ids: list[int], sp: Any, owner: VLLMEngine):
        from discmed.serve.engine import Delta

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
        from discmed.serve.engine import QueueFull

        if self.active >= self.max_queue:
            raise QueueFull(f"the server is busy: {self.active} requests running (limit {self.max_queue})")
        self.active += 1
        sp = sampling_params(params, self.stop_ids, ignore_eos=ignore_eos)
        return _VLLMRequest(self.engine, prompt_ids, sp, self)


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
    from discmed.backend import parse_spec
    from discmed.serve.app import ServedModel

    kind, path = parse_spec(spec)
    if kind == "tiny":
        from discmed.tiny import ensure_tiny

        path = str(ensure_tiny())
    elif kind not in ("hf", "vllm"):
        raise BackendError(f"--engine vllm serves a local model or hub id, not {spec!r}")
    _import_vllm()
    from vllm import AsyncEngineArgs, AsyncLLMEngine

    tokenizer, fmt = _tokenizer_and_format(path, format, trust_remote_code)
    args = AsyncEngineArgs(
        model=path,
        tensor_parallel_size=tensor_parallel_size,
        max_model_len=max_model_len,
        trust_remote_code=trust_remote_code,
        **_quantization(quantize),
    )
    engine = AsyncLLMEngine.from_engine_args(args)
    config = getattr(engine, "model_config", None) or engine.engine.model_config  # V1, V0
    limit = max_model_len or config.max_model_len
    stop_ids = fmt.stop_token_ids(tokenizer)
    encode = lambda msgs: fmt.prompt(msgs, tokenizer, max_length=10**9, reserve=0)  # noqa: E731
    served_name = name or ("tiny" if kind == "tiny" else (Path(path).name if Path(path).exists() else path))
    return ServedModel(
        served_name, VLLMEngine(engine, stop_ids, max_queue), encode, int(limit), tokenizer=tokenizer, engine_name="vllm"
    )
