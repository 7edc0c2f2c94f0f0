"""The transformers backend: any causal LM in Hugging Face format, a local folder or a hub id.

bf16 on a GPU, fp32 on the CPU. Prompts come from `discmed.formats` (the format is read from
the model: `user_token_id` in its generation config means DISC's format, otherwise its
tokenizer's chat template), so what the model is served is what it was trained on.

Generation is the engine's (`discmed.engine.core`, started on first use): `chat` submits its
conversations and waits for them all, `achat` awaits one (concurrent calls from the job engine
join the running batch: continuous batching), `stream` reads one request's deltas. So
`discmed chat`, data and eval jobs and `discmed serve` pick the same tokens for the same seed.
`choice_logprobs` scores with forward passes of its own (no generation).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from discmed.chat import Message
from discmed.compat import cache_kwargs, output_cache
from discmed.contract import BackendError, GenParams, Reply, adapter_base, model_identity, resolve
from discmed.engine.cache import fork_prefix
from discmed.engine.core import LocalEngine
from discmed.engine.protocol import Delta, Request, acollect, collect, deltas
from discmed.formats import DiscFormat, choice_split, get_format
from discmed.structured import GrammarError, TokenizerNotSupported

log = logging.getLogger("discmed")


def pick_format(model: Any, tokenizer: Any, name: str | None = None):
    """The chat format for this model: `name` if given, else what the model's files say."""
    gc = getattr(model, "model_defaults", None) or getattr(model, "generation_config", None)
    user_id = getattr(gc, "user_token_id", None)
    if name == "disc" or (name is None and user_id is not None):
        return DiscFormat(user_id=user_id or 195, assistant_id=getattr(gc, "assistant_token_id", None) or 196)
    if name is not None:
        return get_format(name)
    if getattr(tokenizer, "chat_template", None):
        return get_format("auto")
    raise BackendError(
        "the model has neither a chat template nor DISC's user_token_id in its generation config; "
        "pass a format (disc, chatml, llama3)"
    )


def _meta_model(config_path: str, path: str, trust_remote_code: bool):
    """The model's module tree on the meta device (no memory, no weights), with the generation
    config its folder ships (DISC's format and sampling defaults are read from it)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    import discmed.baichuan  # noqa: F401  (registers model_type "baichuan": discmed loads its models natively)
    config = AutoConfig.from_pretrained(config_path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    for folder in dict.fromkeys((path, config_path)):
        try:
            model.generation_config = GenerationConfig.from_pretrained(folder)
            break
        except OSError:  # no generation_config.json there
            continue
    return model


def _adapter_base(path: str) -> str | None:
    """The folder to load a LoRA adapter folder's base from, else None (not an adapter)."""
    base = adapter_base(path)
    return resolve(base).path if base is not None else None


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class HFBackend:
    """transformers `AutoModelForCausalLM` behind discmed's Backend contract."""

    def __init__(
        self,
        path: str,
        *,
        name: str | None = None,
        format: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        quantize: str | None = None,
        batch_size: int = 8,
        max_length: int | None = None,
        trust_remote_code: bool = False,
        load_weights: bool = True,
    ):
        """`load_weights=False` builds the model on the meta device from its config: the
        tokenizer, prompt format, context length and sampling defaults are all there, the
        weights are not (for a process that only prepares prompts, as `discmed serve`'s
        parent does when its engine runs in a process of its own)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        import discmed.baichuan  # noqa: F401  (registers model_type "baichuan": discmed loads its models natively)
        self.path = path
        self.name = name or (Path(path).name if Path(path).exists() else path)
        self.device = device or default_device()
        self.batch_size = batch_size
        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
        if dtype:
            kwargs["dtype"] = getattr(torch, dtype)
        else:
            kwargs["dtype"] = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        if quantize and load_weights:
            kwargs["quantization_config"] = quantization_config(quantize, self.device)
            kwargs["device_map"] = self.device if self.device != "cpu" else {"": "cpu"}
        elif load_weights and self.device == "cuda" and torch.cuda.device_count() > 1:
            kwargs["device_map"] = "auto"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            base = _adapter_base(path)
            if not load_weights:
                self.model = _meta_model(base or path, path, trust_remote_code)
            elif base is None:
                self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
            else:  # a LoRA adapter folder: its base as discmed names it (`tiny` too), then the adapter
                self.model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
                self.model.load_adapter(path)
        except OSError as e:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            where = "" if Path(path).exists() else " (no such folder here; as a hub id it could not be fetched)"
            raise BackendError(
                f"cannot load model {path!r}{where}: {why} Offline (HF_HUB_OFFLINE=1)? Pass a local folder."
            ) from e
        if "device_map" not in kwargs and load_weights:
            self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.format = pick_format(self.model, self.tokenizer, format)
        # The model's own sampling defaults are kept for default_params(); the model gets a
        # neutral generation config, so a caller of generate() (a benchmark's peer) is not
        # silently given DISC's top_p=0.85 for a top_p it left at 1.0.
        from transformers import GenerationConfig

        self.model_defaults = self.model.generation_config
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        self.max_length = max_length or _context_length(self.model.config, self.tokenizer)
        self._engine: LocalEngine | None = None
        self._engine_lock = threading.Lock()
        self._grammar_cache: dict[str, str | None] = {}
        self.identity = model_identity(path)

    @property
    def engine(self) -> LocalEngine:
        """The engine that generates for this backend, started on first use. `batch_size` is
        its running batch: more concurrent requests wait their turn."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = LocalEngine(self.model, self.tokenizer, self.format.stop_token_ids(self.tokenizer),
                                           max_batch=self.batch_size, max_queue=1 << 30,
                                           max_model_len=self.max_length)  # fmt: skip
            return self._engine

    def close(self) -> None:
        """Stop the engine's thread (a backend dropped without it stops at exit)."""
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None

    # -- parameters ---------------------------------------------------------------------
    def default_params(self) -> GenParams:
        """The model's own sampling defaults (its generation_config.json), as GenParams."""
        gc = self.model_defaults
        sample = bool(getattr(gc, "do_sample", False))
        return GenParams(
            max_new_tokens=min(int(getattr(gc, "max_new_tokens", None) or 512), 2048),
            temperature=float(gc.temperature or 1.0) if sample else 0.0,
            top_p=float(gc.top_p or 1.0) if sample else 1.0,
            top_k=int(gc.top_k or 0) if sample else 0,
            repetition_penalty=float(getattr(gc, "repetition_penalty", None) or 1.0),
        )

    def prompt_ids(self, messages: list[Message], params: GenParams) -> list[int]:
        return self.format.prompt(messages, self.tokenizer, max_length=self.max_length, reserve=params.max_new_tokens)

    def request(self, messages: list[Message], params: GenParams, **options: Any) -> Request:
        """The engine request for a reply to `messages` (a JSON schema compiled to its grammar)."""
        grammar = self._grammar(params.json_schema) if params.json_schema is not None else None
        return Request(self.prompt_ids(messages, params), params, grammar=grammar, **options)

    # -- the contract -------------------------------------------------------------------
    def chat(self, conversations: list[list[Message]], params: GenParams) -> list[str]:
        """Every conversation's reply, generated together (the engine batches them)."""
        outs = collect(self.engine, [self.request(m, params, final_only=True) for m in conversations])
        return [_reply(d) for d in outs]

    @property
    def context_limit(self) -> int:
        """The longest prompt + reply this backend will run (the model's context)."""
        return self.max_length

    async def count_prompt(self, messages: list[Message]) -> int:
        """The prompt's token count in the model's chat format, uncut (`prompt_ids` drops the
        oldest turns to fit; a job engine asks first, to fail a prompt that cannot fit whole)."""
        return len(self.format.prompt(messages, self.tokenizer, max_length=1 << 30, reserve=0))

    async def achat(self, messages: list[Message], params: GenParams) -> str:
        """One reply; concurrent calls join the engine's running batch."""
        return _reply(await acollect(self.engine, self.request(messages, params, final_only=True)))

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        """Text deltas as they are generated; closing the iterator stops the generation."""
        for d in deltas(self.engine, self.request(messages, params)):
            if d.finish_reason == "error":
                raise BackendError(f"generation failed: {d.error}")
            if d.text:
                yield d.text

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        """log P(choice | prompt) for every choice, exactly as lm-evaluation-harness computes it
        (its split of context and continuation: `formats.choice_split`, as in every backend).
        When every choice is one token after the prompt (the usual "答案：A"), one forward pass
        per prompt scores them all, batched by length; otherwise each (prompt, choice) pair gets
        its own pass.
        """
        import torch

        splits = choice_split(prompts, choices, lambda texts: self.tokenizer(texts)["input_ids"])
        results: list[list[float] | None] = [None] * len(prompts)
        single: list[tuple[int, list[int], list[int]]] = []  # (index, context ids, choice ids)
        multi: list[tuple[int, list[int], list[list[int]]]] = []
        for i, (ctx, conts) in enumerate(splits):
            if all(len(c) == 1 for c in conts):
                single.append((i, ctx[-self.max_length :], [c[0] for c in conts]))
            else:
                multi.append((i, ctx, conts))
        single.sort(key=lambda x: len(x[1]))
        for start in range(0, len(single), self.batch_size):
            chunk = single[start : start + self.batch_size]
            logp = self._last_logprobs([ctx for _, ctx, _ in chunk])
            for row, (i, _, ids) in enumerate(chunk):
                results[i] = logp[row, ids].tolist()
        for i, ctx, conts in multi:
            scores = []
            for cont in conts:
                seq = (ctx + cont)[-(self.max_length + 1) :][:-1]
                with torch.inference_mode():
                    logits = self.model(input_ids=torch.tensor([seq], device=self.model.device)).logits
                lp = torch.log_softmax(logits[0, -len(cont) :].float(), dim=-1)
                scores.append(sum(lp[j, t].item() for j, t in enumerate(cont)))
            results[i] = scores
        return results  # type: ignore[return-value]

    # -- helpers ------------------------------------------------------------------------
    def _grammar(self, schema: dict) -> str | None:
        """The compiled grammar of `schema` (cached), or None where this model cannot be
        constrained (a tokenizer llguidance cannot read, such as a slow sentencepiece one):
        then it generates unconstrained, as GenParams.json_schema allows, and says so once."""
        import json


        key = json.dumps(schema, sort_keys=True)
        if key in self._grammar_cache:
            return self._grammar_cache[key]
        grammar = None
        try:
            grammar = self.engine.grammars.schema_grammar(schema)
        except TokenizerNotSupported as e:
            log.warning("%s: JSON output not constrained (%s); the reply is parsed as prose", self.name, e)
        except GrammarError as e:
            raise BackendError(f"json_schema: {e}") from None
        self._grammar_cache[key] = grammar
        return grammar

    def _last_logprobs(self, rows: list[list[int]]):
        """log-softmax of the next-token logits after each row.

        The batch's common prefix (a task description, few-shot examples) runs once and its KV
        cache is forked to every row (`engine.cache.fork_prefix`: each row's copy moved right, a
        shorter row re-running the prefix's last few tokens instead of padding), so real tokens
        stay contiguous and keep their positions — exact for rotary models and for ALiBi
        (Baichuan-13B), whose bias reads the distance between cache slots. Every row ends in the
        last column, the only one projected onto the vocabulary (`logits_to_keep=1`).
        """
        import torch

        dev = self.model.device
        n = min(map(len, rows)) - 1  # every row keeps at least one token after the prefix
        k = 0
        while k < n and all(r[k] == rows[0][k] for r in rows):
            k += 1
        longest = max(map(len, rows))
        if len(rows) == 1 or k < 8 or longest - min(map(len, rows)) > k:  # not worth it, or rows too uneven
            k = 0
        with torch.inference_mode():
            if k:
                width = longest - k
                shifts = [longest - len(r) for r in rows]
                pre = self.model(input_ids=torch.tensor([rows[0][:k]], device=dev),
                                 position_ids=torch.arange(k, device=dev)[None], use_cache=True, logits_to_keep=1)
                cache, cache_mask = fork_prefix(output_cache(pre), shifts, dev)
                ids = torch.tensor([r[k - s:] for r, s in zip(rows, shifts, strict=True)], device=dev)
                positions = torch.stack([torch.arange(len(r) - width, len(r), device=dev) for r in rows])
                mask = torch.cat([cache_mask, torch.ones_like(ids)], dim=1)
            else:  # left-padded: pads masked, real tokens contiguous
                cache, pad = None, self.tokenizer.pad_token_id
                ids = torch.tensor([[pad] * (longest - len(r)) + r for r in rows], device=dev)
                mask = torch.tensor([[0] * (longest - len(r)) + [1] * len(r) for r in rows], device=dev)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             **cache_kwargs(self.model, cache), use_cache=bool(k), logits_to_keep=1)  # fmt: skip
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1)


def _reply(d: Delta) -> Reply:
    """An engine's last delta as the contract's reply, or the request's own error."""
    if d.finish_reason == "error":
        raise BackendError(f"generation failed: {d.error}")
    return Reply(d.text, d.finish_reason)


def quantization_config(kind: str, device: str):
    """bitsandbytes config for `--quantize int8|int4`; int4 (NF4) needs a CUDA GPU."""
    import torch
    from transformers import BitsAndBytesConfig

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if kind == "int4":
        if not device.startswith("cuda"):
            raise BackendError("int4 (bitsandbytes NF4) needs a CUDA GPU; on CPU use --quantize int8 or none")
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    raise BackendError(f"unknown quantization {kind!r} (expected int8 or int4)")


def _context_length(config: Any, tokenizer: Any) -> int:
    for key in ("max_position_embeddings", "model_max_length", "max_sequence_length", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and 0 < value < 10**7:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and value < 10**7 else int(os.environ.get("DISCMED_MAX_LENGTH", 4096))
