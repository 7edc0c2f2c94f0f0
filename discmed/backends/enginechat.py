"""What a backend over an engine of another project (vLLM, llama.cpp) does the same way: prompt
with discmed.formats from the model folder's tokenizer, and wait on the engine through the
contract's `collect` / `acollect` / `deltas`.

A subclass sets `tokenizer`, `format`, `max_length` and `engine`; `EngineChat` gives it
`prompt_ids`, `count_prompt`, `chat` (all conversations submitted together, the engine batches
them), `achat` (one request joining the engine's running batch: the job engine's way in),
`stream` and `close`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from discmed.backends.hf import pick_format
from discmed.chat import Message
from discmed.contract import BackendError, GenParams, Reply
from discmed.engine.protocol import Delta, Request, acollect, collect, deltas


def tokenizer_and_format(path: str, format: str | None, trust_remote_code: bool):
    """A model folder's tokenizer and chat format (its generation config says which), no weights."""
    from transformers import AutoTokenizer, GenerationConfig

    import discmed.baichuan  # noqa: F401  (registers model_type "baichuan": discmed loads its models natively)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    try:
        gc = GenerationConfig.from_pretrained(path)
    except OSError:
        gc = None
    holder = type("ModelFiles", (), {"generation_config": gc})()  # pick_format reads only this
    return tokenizer, pick_format(holder, tokenizer, format)


def reply(d: Delta) -> Reply:
    """An engine's last delta as the contract's reply, or the request's own error."""
    if d.finish_reason == "error":
        raise BackendError(f"generation failed: {d.error}")
    return Reply(d.text, d.finish_reason)


class EngineChat:
    tokenizer: Any
    format: Any
    max_length: int
    engine: Any

    def prompt_ids(self, messages: list[Message], params: GenParams) -> list[int]:
        return self.format.prompt(messages, self.tokenizer, max_length=self.max_length, reserve=params.max_new_tokens)

    def context_limit(self) -> int:
        return self.max_length

    async def count_prompt(self, messages: list[Message]) -> int:
        """The prompt's token count, uncut (a job engine asks first, to fail what cannot fit)."""
        return len(self.format.prompt(messages, self.tokenizer, max_length=1 << 30, reserve=0))

    def chat(self, conversations: list[list[Message]], params: GenParams) -> list[Reply]:
        outs = collect(self.engine, [Request(self.prompt_ids(m, params), params, final_only=True) for m in conversations])
        return [reply(d) for d in outs]

    async def achat(self, messages: list[Message], params: GenParams) -> Reply:
        return reply(await acollect(self.engine, Request(self.prompt_ids(messages, params), params, final_only=True)))

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        for d in deltas(self.engine, Request(self.prompt_ids(messages, params), params)):
            if d.finish_reason == "error":
                raise BackendError(f"generation failed: {d.error}")
            if d.text:
                yield d.text

    def close(self) -> None:
        self.engine.shutdown()
