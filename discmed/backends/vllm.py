"""vLLM, in process: `load_backend("vllm:PATH")`, and what the server's vLLM engine shares with it.

An optional extra (`pip install discmed[vllm]`, a CUDA GPU); vllm is imported only when one of
these is built, so nothing else in discmed needs it. Prompts are built by discmed's own chat
formats and handed to vLLM as token ids, so a model is served exactly as it was trained, the
same as on the hf backend.

- `VLLMBackend`: the Backend contract over `vllm.LLM` (offline batched generation; the
  teacher, patient or judge of a large data or eval run). `stream` yields the whole reply at
  once: `vllm.LLM` has no streaming (the server uses the async engine below for that).
- the helpers the server's vLLM engine (`discmed.serve.vllm`) shares with it: the import
  with its message, quantization options, the tokenizer and format, sampling parameters.

Not exercised by the default test suite (no GPU there); written against vLLM's documented
API: `LLM.generate`, `SamplingParams`, `TokensPrompt`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from discmed.backend import BackendError, Batcher, GenParams, apply_stop, model_identity
from discmed.chat import Message


def import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise BackendError(
            "the vllm engine needs the optional extra and a CUDA GPU: pip install 'discmed[vllm]'"
        ) from e
    return vllm


def vllm_quantization(quantize: str | None) -> dict[str, Any]:
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


def tokenizer_and_format(path: str, format: str | None, trust_remote_code: bool):
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

    if params.json_schema is not None and "structured_outputs" not in extra and "guided_decoding" not in extra:
        try:  # vLLM >= 0.11
            from vllm.sampling_params import StructuredOutputsParams

            extra["structured_outputs"] = StructuredOutputsParams(json=params.json_schema)
        except ImportError:
            from vllm.sampling_params import GuidedDecodingParams

            extra["guided_decoding"] = GuidedDecodingParams(json=params.json_schema)
    return SamplingParams(
        n=1,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k if params.top_k > 0 else -1,
        min_p=params.min_p,
        repetition_penalty=params.repetition_penalty,
        frequency_penalty=params.frequency_penalty,
        presence_penalty=params.presence_penalty,
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
        vllm = import_vllm()
        self.path = path
        self.name = name or (Path(path).name if Path(path).exists() else path)
        self.tokenizer, self.format = tokenizer_and_format(path, format, trust_remote_code)
        self.llm = vllm.LLM(
            model=path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_length,
            trust_remote_code=trust_remote_code,
            **vllm_quantization(quantize),
        )
        self.max_length = max_length or self.llm.llm_engine.model_config.max_model_len
        self.stop_ids = self.format.stop_token_ids(self.tokenizer)
        self.identity = model_identity(path)
        self._batcher = Batcher(self.chat, max_batch=256)  # vLLM schedules a large batch itself

    def _prompt(self, messages: list[Message], params: GenParams) -> dict:
        ids = self.format.prompt(
            messages, self.tokenizer, max_length=self.max_length, reserve=params.max_new_tokens
        )
        return {"prompt_token_ids": ids}  # a vllm.inputs.TokensPrompt

    def chat(self, conversations: list[list[Message]], params: GenParams) -> list[str]:
        prompts = [self._prompt(m, params) for m in conversations]
        outs = self.llm.generate(prompts, sampling_params(params, self.stop_ids), use_tqdm=False)
        return [apply_stop(o.outputs[0].text, params.stop)[0] for o in outs]

    async def achat(self, messages: list[Message], params: GenParams) -> str:
        return await self._batcher(messages, params)

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
