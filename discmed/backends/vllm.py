"""vLLM, in process: `load_backend("vllm:PATH")`.

An optional extra (`pip install discmed[vllm]`, a CUDA GPU); vllm is imported only when one is
built, so nothing else in discmed needs it. Prompts are built by discmed's own chat formats and
handed to vLLM as token ids, so a model is served exactly as it was trained, the same as on the
hf backend. Generation is vLLM's async engine behind discmed's Engine contract
(`discmed.engine.vllm`), which `discmed serve --engine vllm` serves too: `chat` submits its
conversations and waits for them all, `achat` awaits one (the job engine's calls join vLLM's
running batch), `stream` reads one request's deltas. `choice_logprobs` reads vLLM's prompt
logprobs of each (prompt, choice), split as every backend splits them (`formats.choice_split`).

Not exercised by the default test suite (no GPU there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from discmed.backends.enginechat import EngineChat, tokenizer_and_format
from discmed.contract import GenParams, model_identity
from discmed.engine.protocol import Request, collect
from discmed.engine.vllm import VLLMEngine, import_vllm, vllm_quantization
from discmed.formats import choice_split

__all__ = ["VLLMBackend", "import_vllm", "vllm_quantization"]


class VLLMBackend(EngineChat):
    """The Backend contract over vLLM's async engine."""

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
        max_queue: int = 1 << 30,
        trust_remote_code: bool = False,
        **_: Any,
    ):
        import_vllm()
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        self.path = path
        self.name = name or (Path(path).name if Path(path).exists() else path)
        self.tokenizer, self.format = tokenizer_and_format(path, format, trust_remote_code)
        args = AsyncEngineArgs(
            model=path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_length,
            trust_remote_code=trust_remote_code,
            **vllm_quantization(quantize),
        )
        llm = AsyncLLMEngine.from_engine_args(args)
        config = getattr(llm, "model_config", None) or llm.engine.model_config  # V1, V0
        self.max_length = int(max_length or config.max_model_len)
        self.stop_ids = self.format.stop_token_ids(self.tokenizer)
        self.engine = VLLMEngine(llm, self.stop_ids, max_queue)
        self.identity = model_identity(path)

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        """log P(choice | prompt): the sum of vLLM's prompt logprobs over each continuation."""
        splits = choice_split(prompts, choices, lambda texts: self.tokenizer(texts)["input_ids"])
        score = GenParams(max_new_tokens=0)  # nothing generated: the prompt is scored
        reqs = [Request(ctx + cont, score, prompt_logprobs=0, final_only=True) for ctx, conts in splits for cont in conts]
        outs = collect(self.engine, reqs)
        spans = [(len(ctx), len(ctx) + len(cont)) for ctx, conts in splits for cont in conts]
        scores = [sum(e.logprob for e in d.prompt_logprobs[a:b]) for d, (a, b) in zip(outs, spans, strict=True)]
        n = len(choices)
        return [scores[i * n : (i + 1) * n] for i in range(len(prompts))]
