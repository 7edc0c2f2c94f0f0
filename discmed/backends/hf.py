"""The transformers backend: any causal LM in Hugging Face format, a local folder or a hub id.

bf16 on a GPU, fp32 on the CPU. Prompts come from `discmed.formats` (the format is read from
the model: `user_token_id` in its generation config means DISC's format, otherwise its
tokenizer's chat template), so what the model is served is what it was trained on.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from discmed.backend import BackendError, Batcher, GenParams, Reply, apply_stop, model_identity
from discmed.chat import Message
from discmed.compat import cache_kwargs, output_cache
from discmed.formats import DiscFormat, get_format

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
    from discmed.backend import adapter_base, resolve

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
        # generate() fills fields left at library defaults from the model's generation config, so
        # a request's top_p=1.0 would silently become DISC's 0.85. Keep the model's defaults for
        # default_params() and give generate() a neutral config to merge with.
        from transformers import GenerationConfig

        self.model_defaults = self.model.generation_config
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        self.max_length = max_length or _context_length(self.model.config, self.tokenizer)
        self._lock = threading.Lock()  # one generate at a time on this model
        self._grammars: Any = None  # structured output (discmed.structured), built on first use
        self._grammar_cache: dict[str, str | None] = {}
        self.identity = model_identity(path)
        self._batcher = Batcher(self.chat, max_batch=batch_size)

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

    def _generation_config(self, params: GenParams):
        from transformers import GenerationConfig

        # Token choice is the shared sampler's (discmed.sampling, passed as a logits processor):
        # generate() decodes greedily over what it leaves, so chat and serve pick alike.
        stop_ids = self.format.stop_token_ids(self.tokenizer)
        return GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=False,
            eos_token_id=stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
            stop_strings=params.stop or None,
        )

    def prompt_ids(self, messages: list[Message], params: GenParams) -> list[int]:
        return self.format.prompt(messages, self.tokenizer, max_length=self.max_length, reserve=params.max_new_tokens)

    # -- the contract -------------------------------------------------------------------
    def chat(self, conversations: list[list[Message]], params: GenParams) -> list[str]:
        """Batched generation: prompts sorted by length, left-padded, `batch_size` at a time."""
        import torch

        prompts = [self.prompt_ids(m, params) for m in conversations]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[str] = [""] * len(prompts)
        config = self._generation_config(params)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            input_ids, attention = self._left_pad([prompts[i] for i in idx])
            with self._lock, torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=attention,
                    generation_config=config,
                    logits_processor=self._sampler(params, attention),
                    tokenizer=self.tokenizer if params.stop else None,
                )
            stop_ids = set(self.format.stop_token_ids(self.tokenizer))
            for row, i in enumerate(idx):
                new = out[row, input_ids.shape[1] :].tolist()
                text, stopped = apply_stop(self.tokenizer.decode(new, skip_special_tokens=True), params.stop)
                ended = stopped or any(t in stop_ids for t in new) or len(new) < params.max_new_tokens
                results[i] = Reply(text, "stop" if ended else "length")
        return results

    @property
    def context_limit(self) -> int:
        """The longest prompt + reply this backend will run (the model's context)."""
        return self.max_length

    async def count_prompt(self, messages: list[Message]) -> int:
        """The prompt's token count in the model's chat format, uncut (`prompt_ids` drops the
        oldest turns to fit; a job engine asks first, to fail a prompt that cannot fit whole)."""
        return len(self.format.prompt(messages, self.tokenizer, max_length=1 << 30, reserve=0))

    async def achat(self, messages: list[Message], params: GenParams) -> str:
        """One reply; concurrent calls are batched into `chat` (see backend.Batcher)."""
        return await self._batcher(messages, params)

    def stream(self, messages: list[Message], params: GenParams) -> Iterator[str]:
        """Token-by-token text deltas; closing the iterator stops the generation."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        input_ids, attention = self._left_pad([self.prompt_ids(messages, params)])
        tokens: queue.Queue = queue.Queue()
        cancel = threading.Event()
        failure: list[BaseException] = []

        class Cancelled(StoppingCriteria):
            def __call__(self, ids, scores, **kw):
                return torch.full((ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=ids.device)

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    self.model.generate(
                        input_ids=input_ids,
                        attention_mask=attention,
                        generation_config=self._generation_config(params),
                        logits_processor=self._sampler(params, attention),
                        streamer=_TokenStreamer(tokens),
                        tokenizer=self.tokenizer if params.stop else None,
                        stopping_criteria=StoppingCriteriaList([Cancelled()]),
                    )
            except BaseException as e:  # surfaced to the consumer below
                failure.append(e)
            finally:
                tokens.put(None)

        # Not a daemon, and started inside the try: a Ctrl+C that lands in start() must still
        # cancel and join it, or a generation left running aborts the interpreter at exit.
        thread = threading.Thread(target=run, name="discmed-generate")
        ids: list[int] = []
        sent = 0
        holdback = max((len(s) for s in params.stop), default=0)
        try:
            thread.start()
            while (item := tokens.get()) is not None:
                ids.extend(item)
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue  # a character split across tokens: wait for the rest of it
                text, stopped = apply_stop(text, params.stop)
                ready = len(text) if stopped else max(sent, len(text) - holdback)
                if ready > sent:
                    yield text[sent:ready]
                    sent = ready
                if stopped:
                    return
            if failure:
                raise BackendError(f"generation failed: {failure[0]}") from failure[0]
            text = apply_stop(self.tokenizer.decode(ids, skip_special_tokens=True), params.stop)[0]
            if len(text) > sent:
                yield text[sent:]
        finally:
            cancel.set()
            if thread.ident is not None:
                thread.join()

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        """log P(choice | prompt) for every choice, exactly as lm-evaluation-harness computes it.

        lm_eval's split: trailing whitespace of the prompt moves onto the choice, the tokenizer's
        default special tokens are used (bos where it adds one), and the continuation is
        `encode(prompt + choice)[len(encode(prompt)):]`. When every choice is one token after
        the prompt (the usual "答案：A"), one forward pass per prompt scores them all, batched
        by length; otherwise each (prompt, choice) pair gets its own pass.
        """
        import torch

        tok = self.tokenizer
        ctx_texts, cont_texts = [], []
        for p in prompts:
            n = len(p) - len(p.rstrip())
            ctx_texts.append(p[: len(p) - n])
            cont_texts.append([p[len(p) - n :] + c for c in choices])
        ctx_ids = tok(ctx_texts)["input_ids"]
        whole_ids = tok([cx + ct for cx, cts in zip(ctx_texts, cont_texts, strict=True) for ct in cts])["input_ids"]
        k = len(choices)
        results: list[list[float] | None] = [None] * len(prompts)
        single: list[tuple[int, list[int], list[int]]] = []  # (index, context ids, choice ids)
        multi: list[tuple[int, list[int], list[list[int]]]] = []
        for i, ctx in enumerate(ctx_ids):
            conts = [w[len(ctx) :] for w in whole_ids[i * k : (i + 1) * k]]
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
    def _sampler(self, params: GenParams, attention: Any):
        from transformers import LogitsProcessorList

        from discmed.sampling import SamplerProcessor

        starts = (attention.shape[1] - attention.sum(-1)).tolist()  # left padding per row
        constraints = None
        if params.json_schema is not None and (grammar := self._grammar(params.json_schema)) is not None:
            constraints = [self._grammars.constraint(grammar) for _ in starts]
        return LogitsProcessorList([SamplerProcessor(params, starts, self.model.device, constraints)])

    def _grammar(self, schema: dict) -> str | None:
        """The compiled grammar of `schema` (cached), or None where this model cannot be
        constrained (a tokenizer llguidance cannot read, such as a slow sentencepiece one):
        then it generates unconstrained, as GenParams.json_schema allows, and says so once."""
        import json

        from discmed.structured import GrammarError, Grammars, TokenizerNotSupported

        key = json.dumps(schema, sort_keys=True)
        if key in self._grammar_cache:
            return self._grammar_cache[key]
        grammar = None
        try:
            if self._grammars is None:
                vocab = self.model.get_output_embeddings().weight.shape[0]
                self._grammars = Grammars(self.tokenizer, vocab, self.format.stop_token_ids(self.tokenizer))
            grammar = self._grammars.schema_grammar(schema)
        except TokenizerNotSupported as e:
            log.warning("%s: JSON output not constrained (%s); the reply is parsed as prose", self.name, e)
        except GrammarError as e:
            raise BackendError(f"json_schema: {e}") from None
        self._grammar_cache[key] = grammar
        return grammar

    def _left_pad(self, rows: list[list[int]]):
        import torch

        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.model.device)
        return ids, mask

    def _last_logprobs(self, rows: list[list[int]]):
        """log-softmax of the next-token logits after each row.

        The batch's common prefix (a task description, few-shot examples) runs once and its KV
        cache is shared across the rows; the suffixes are left-padded (pads masked, positions
        from the mask) so every row ends in the last column, the only one projected onto the
        vocabulary (`logits_to_keep=1`).
        """
        import torch

        dev = self.model.device
        n = min(map(len, rows)) - 1  # every row keeps at least one token after the prefix
        k = 0
        while k < n and all(r[k] == rows[0][k] for r in rows):
            k += 1
        if len(rows) == 1 or k < 8:  # not worth a second call
            k = 0
        pad = self.tokenizer.pad_token_id
        suffixes = [r[k:] for r in rows]
        width = max(map(len, suffixes))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in suffixes], device=dev)
        mask = torch.tensor([[1] * k + [0] * (width - len(r)) + [1] * len(r) for r in suffixes], device=dev)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, k:]
        with torch.inference_mode():
            cache = None
            if k:
                cache = output_cache(self.model(input_ids=torch.tensor([rows[0][:k]], device=dev), use_cache=True))
                cache.batch_repeat_interleave(len(rows))
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                **cache_kwargs(self.model, cache),
                use_cache=bool(k),
                logits_to_keep=1,
            )
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1)


class _TokenStreamer:
    """transformers streamer that hands generated ids (not the prompt) to a queue."""

    def __init__(self, q: queue.Queue):
        self.q = q
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.q.put(value.reshape(-1).tolist())

    def end(self) -> None:
        pass


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
