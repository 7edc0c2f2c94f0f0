"""The generation engine behind the API: dynamic batching on a transformers model.

One background thread owns the model. Requests wait in a bounded queue. The thread generates
for a batch of requests token by token, with a KV cache; requests that arrive while it runs
join the batch at the next step (their prompts are run on their own, then their KV cache is
stacked onto the running batch's, left-padded to the same length) instead of queueing one by
one: continuous batching, up to `max_batch` rows. A request whose client went away is
cancelled and dropped from the batch at the next step; a finished one is dropped too, so a
long reply does not keep paying for short ones.

The engine knows token ids, not chat formats: the app turns messages into a prompt with the
model's ChatFormat and hands ids in; text deltas come out on an asyncio queue.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from discmed.backend import GenParams, apply_stop
from discmed.compat import cache_kwargs, output_cache
from discmed.sampling import make_generator, sample, uses_counts

log = logging.getLogger("discmed.serve")


class QueueFull(RuntimeError):
    """The engine has `max_queue` requests waiting or running already."""


class EngineUnavailable(RuntimeError):
    """The engine cannot take requests at all (its process has died)."""


@dataclass
class TokenLogprob:
    """A token's log-probability under the model (before any sampling transform), and the
    `top` most likely tokens at that position as (id, logprob)."""

    id: int
    logprob: float | None  # None for a prompt's first token, which nothing predicts
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Delta:
    """One step of output: new text, and when the request ends, why and how many tokens."""

    text: str
    finish_reason: str | None = None  # "stop" | "length" | "error" | "cancelled"
    completion_tokens: int = 0
    error: str | None = None
    logprobs: list[TokenLogprob] | None = None  # the tokens behind this text, when asked
    prompt_logprobs: list[TokenLogprob] | None = None  # once, first, when asked


@dataclass(eq=False)  # compared and hashed by identity
class GenRequest:
    prompt_ids: list[int]
    params: GenParams
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    ignore_eos: bool = False  # keep generating past the stop tokens (benchmarks, tests)
    logprobs: int | None = None  # None: none; k: the chosen token's logprob and the top k
    prompt_logprobs: int | None = None  # the same for every prompt token (echo, scoring)
    constraint: Any = None  # a structured-output matcher (discmed.structured)
    logit_bias: dict[int, float] | None = None  # added to the logits before sampling
    arrived: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    rid: int = 0  # the request's number across a process boundary (discmed.serve.engine_proc)

    def cancel(self) -> None:
        self.cancelled.set()


class _Mailbox:
    """Deltas from the engine thread to one event loop. A wake-up (`call_soon_threadsafe`)
    costs the engine thread a GIL hand-off, so one is made only when the loop has drained
    the previous delivery; under load, many steps' deltas ride on one wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.items: collections.deque = collections.deque()
        self.scheduled = False

    def post(self, items: list[tuple[GenRequest, Delta]]) -> None:
        self.items.extend(items)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self.scheduled = False  # first: anything posted from now on schedules a new drain
        while self.items:
            req, delta = self.items.popleft()
            req.out.put_nowait(delta)


def freeze_startup_heap() -> None:
    """Move everything allocated so far (torch, transformers, the model, the tokenizer) out of
    the garbage collector's reach, as vLLM's engine does once loaded: a full collection then
    scans only what serving allocates. Without it, collections of the oldest generation took
    up to ~300 ms each in the server and in the engine process, pausing every request at once
    (the TTFT p95 outliers of benchmarks/serve_vs_transformers.py)."""
    import gc

    gc.collect()
    gc.freeze()


def deliver(mailboxes: dict[int, _Mailbox], items: list[tuple[GenRequest, Delta]]) -> None:
    """Hand `(request, delta)` pairs to their requests' event loops: one mailbox (and one
    wake-up) per loop, kept in `mailboxes` from one call to the next."""
    by_loop: dict[int, list] = {}
    for item in items:
        by_loop.setdefault(id(item[0].loop), []).append(item)
    for group in by_loop.values():
        loop = group[0][0].loop
        box = mailboxes.get(id(loop))
        if box is None or box.loop is not loop:
            box = mailboxes[id(loop)] = _Mailbox(loop)
        box.post(group)


@dataclass
class _Row:
    """A request's state inside a running batch."""

    req: GenRequest
    ids: list[int] = field(default_factory=list)  # generated token ids
    text: str = ""  # decoded so far (whole characters only)
    sent: int = 0  # characters of text already emitted
    prefix_offset: int = 0  # incremental detokenization window, as in TGI and vLLM
    read_offset: int = 0
    generator: Any = None
    pending: list[TokenLogprob] = field(default_factory=list)  # logprobs not yet emitted
    stream: Any = None  # tokenizers' DecodeStream, when the tokenizer is a fast one
    checked: int = 0  # characters of text already searched for stop strings
    hold: int = 0  # characters held back: the longest stop string's length minus one

    def __post_init__(self) -> None:
        self.hold = max((len(s) - 1 for s in self.req.params.stop if s), default=0)


@dataclass
class _Batch:
    """The running batch: its rows, each row's next input id, and the tensors they share.

    A finished row is not taken out of the tensors at once (that copies the whole KV cache):
    it stays as a dead row, outside `live`, until enough have finished to be worth a copy or
    room is needed for joining requests (`compact`)."""

    rows: list[_Row]
    next_ids: list[int]
    cache: Any
    mask: Any
    pos: Any
    seen: Any
    live: list[int] = field(default_factory=list)  # indices of the rows still generating
    counts: Any = None  # generated-token counts (frequency/presence penalties), where a row has them

    def __post_init__(self) -> None:
        if not self.live:
            self.live = list(range(len(self.rows)))

    @property
    def dead(self) -> int:
        return len(self.rows) - len(self.live)

    def compact(self) -> _Batch | None:
        return self.select(self.live)

    def join(self, other: _Batch | None) -> _Batch:
        import torch

        if other is None or not other.rows:
            return self
        if not self.rows:
            return other
        self.cache, self.mask = _join_caches(self.cache, self.mask, other.cache, other.mask)
        if self.counts is not None or other.counts is not None:  # a side without counts has none yet
            mine = self.counts if self.counts is not None else self.seen.new_zeros(self.seen.shape, dtype=torch.float32)
            theirs = other.counts if other.counts is not None else other.seen.new_zeros(other.seen.shape, dtype=torch.float32)
            self.counts = torch.cat([mine, theirs])
        self.pos, self.seen = torch.cat([self.pos, other.pos]), torch.cat([self.seen, other.seen])
        self.live += [len(self.rows) + i for i in other.live]
        self.rows += other.rows
        self.next_ids += other.next_ids
        return self

    def select(self, keep: list[int]) -> _Batch | None:
        import torch

        if len(keep) == len(self.rows):
            return self
        if not keep:
            return None
        idx = torch.tensor(keep, device=self.mask.device)
        mask = self.mask[idx]
        # The rows that remain may all start later than the longest one that left: the columns
        # of padding they share on the left are cut, so attention and the cache stop paying for
        # them (under steady load the batch never empties, and its width would only grow).
        real = mask.any(0).nonzero()
        cut = int(real[0]) if len(real) else 0
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[idx, :, cut:], layer.values[idx, :, cut:]
        self.mask, self.pos, self.seen = mask[:, cut:], self.pos[idx], self.seen[idx]
        if self.counts is not None:
            self.counts = self.counts[idx]
        self.rows = [self.rows[i] for i in keep]
        self.next_ids = [self.next_ids[i] for i in keep]
        self.live = list(range(len(keep)))
        return self


class BatchEngine:
    """Dynamic batching over `model` (a transformers causal LM) on one background thread.

    A failure that belongs to one request (its prompt cannot be run, its sampling or its
    grammar breaks) ends that request alone with an error; the rest of the batch goes on.
    Only a failure of the shared decode step itself (out of memory) ends the whole batch.
    """

    features = frozenset({"logprobs", "prompt_logprobs", "structured_output"})
    BURST_GAP_S = 0.002
    BURST_WINDOW_S = 0.025
    # Joining a running batch costs a prefill forward and a copy of the cache, about a decode
    # step each on a small model: arrivals are gathered for up to ADMIT_STEPS decode steps (or
    # until a group of an eighth of the batch is waiting) and joined together.
    ADMIT_STEPS = 2

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        stop_token_ids: list[int],
        *,
        max_batch: int = 32,
        max_queue: int = 256,
        max_model_len: int | None = None,
        sink: Any = None,
    ):
        """`sink`, when given, takes each step's `[(request, delta), ...]` from the engine
        thread instead of the requests' event loops (the engine process sends them on)."""
        import torch

        self.torch = torch
        self.sink = sink
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_token_ids)
        self.max_batch = max_batch
        self.max_queue = max_queue
        cfg = getattr(model, "config", None)
        self.max_model_len = max_model_len or int(getattr(cfg, "max_position_embeddings", 0) or 4096)
        self.vocab = model.get_output_embeddings().weight.shape[0]
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.device = next(model.parameters()).device
        self._waiting: queue.Queue[GenRequest] = queue.Queue()
        self._active = 0  # waiting + running, guarded by _lock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._outbox: list[tuple[GenRequest, Delta]] = []  # deltas of this step, sent together
        self._running: set[GenRequest] = set()
        self._head: GenRequest | None = None
        self._mailboxes: dict[int, _Mailbox] = {}
        # Incremental detokenizing in Rust (one call per token) for fast tokenizers whose decode
        # is the plain Rust decode; others (Baichuan's sentencepiece) decode a short window.
        self._rust_tok = None
        rust = getattr(tokenizer, "_tokenizer", None)
        if rust is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False):
            try:
                from tokenizers.decoders import DecodeStream

                self._rust_tok, self._decode_stream = rust, DecodeStream
            except ImportError:  # tokenizers older than 0.21
                pass
        self._thread = threading.Thread(target=self._run, name="discmed-engine", daemon=True)
        # The engine thread runs Python between torch ops; with the default 5 ms GIL switch
        # interval the event loop (which streams the tokens out) could wait that long for
        # every token. A shorter interval keeps streaming latency low.
        if sys.getswitchinterval() > 0.001:
            sys.setswitchinterval(0.001)
        # counters shown by /health and /metrics
        self.batches = 0  # prefill groups
        self.max_batch_seen = 0
        self.running = 0  # rows in the batch now
        self.cancelled = 0
        self.failed = 0  # requests ended by an error of their own
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.mean_seconds = 1.0  # moving average of a request's time in the engine
        self.step_s = 0.0  # moving average of a decode step's time
        self._thread.start()

    # -- public ---------------------------------------------------------------------------

    def submit(
        self,
        prompt_ids: list[int],
        params: GenParams,
        loop: asyncio.AbstractEventLoop,
        ignore_eos: bool = False,
        **options: Any,
    ) -> GenRequest:
        """Queue a request; `options` are GenRequest's `logprobs`, `prompt_logprobs`,
        `constraint` (or `grammar`, a compiled grammar it is built from), `logit_bias`.
        Raises QueueFull when `max_queue` requests are in already."""
        grammar = options.pop("grammar", None)
        if grammar is not None:
            options["constraint"] = self.grammars.constraint(grammar)
        with self._lock:
            if self._active >= self.max_queue:
                raise QueueFull(
                    f"the server is busy: {self._active} requests queued or running (limit {self.max_queue})"
                )
            self._active += 1
        req = GenRequest(prompt_ids, params, loop, ignore_eos=ignore_eos, **options)
        self._waiting.put(req)
        return req

    _grammars: Any = None

    @property
    def grammars(self):
        """Structured-output grammars for this engine's tokenizer (built on first use)."""
        if self._grammars is None:
            from discmed.structured import Grammars

            self._grammars = Grammars(self.tokenizer, self.vocab, sorted(self.stop_ids))
        return self._grammars

    @property
    def load(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return self._waiting.qsize()

    @property
    def retry_after(self) -> int:
        """Seconds a refused client should wait: about the time for the queue to move on."""
        return int(min(60, max(1, math.ceil(self.mean_seconds * (1 + self.queued / self.max_batch)))))

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    # -- the engine thread ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._waiting.get(timeout=0.1)
            except queue.Empty:
                continue
            self._head = first  # admitted first by _generate, ahead of later arrivals
            try:
                self._generate()
            except Exception as e:  # the shared step failed (OOM, a bug): nobody can go on
                log.exception("generation failed")
                for r in list(self._running):
                    self._finish(r, Delta("", "error", error=f"generation failed: {type(e).__name__}: {e}"))
            self.running = 0
            self._flush()

    def _await_burst(self, room: int) -> None:
        """Before prefilling from idle, wait while requests keep arriving (each within
        BURST_GAP_S of the last, BURST_WINDOW_S at most), so that a burst of clients is
        prefilled in one forward pass instead of one pass (and one cache join) each. A lone
        request pays one gap."""
        end = time.perf_counter() + self.BURST_WINDOW_S
        seen = self._waiting.qsize()
        while seen + 1 < room:
            now = time.perf_counter()
            if now >= end:
                return
            time.sleep(min(self.BURST_GAP_S, end - now))
            n = self._waiting.qsize()
            if n == seen:
                return
            seen = n

    def _join_now(self, room: int, live: int) -> bool:
        """Whether waiting requests join the running batch at this step: when enough wait to
        make a group, or the first of them has waited ADMIT_STEPS decode steps."""
        if room <= 0:
            return False
        with self._waiting.mutex:  # (the head taken by _run is admitted before any batch runs)
            waiting = len(self._waiting.queue)
            first = self._waiting.queue[0] if waiting else None
        if first is None:
            return False
        if waiting >= min(room, max(1, live // 8)):
            return True
        return time.perf_counter() - first.arrived >= self.ADMIT_STEPS * self.step_s

    def _admit(self, room: int) -> list[GenRequest]:
        """Waiting requests, up to `room`; ones cancelled while waiting are answered here."""
        taken: list[GenRequest] = []
        while len(taken) < room:
            if self._head is not None:
                r, self._head = self._head, None
            else:
                try:
                    r = self._waiting.get_nowait()
                except queue.Empty:
                    break
            if r.cancelled.is_set():
                self.cancelled += 1
                self._finish(r, Delta("", "cancelled"))
            else:
                taken.append(r)
                self._running.add(r)
        return taken

    def _emit(self, req: GenRequest, delta: Delta) -> None:
        self._outbox.append((req, delta))

    def _finish(self, req: GenRequest, delta: Delta) -> None:
        self._outbox.append((req, delta))
        self.mean_seconds = 0.9 * self.mean_seconds + 0.1 * (time.perf_counter() - req.arrived)
        self._running.discard(req)
        with self._lock:
            self._active -= 1

    def _fail(self, row: _Row, message: str) -> None:
        log.warning("request failed alone: %s", message)
        self.failed += 1
        self._finish(row.req, Delta("", "error", len(row.ids), error=message))

    def _flush(self) -> None:
        """Hand this step's deltas to the event loops that wait for them."""
        if not self._outbox:
            return
        if self.sink is not None:
            items, self._outbox = self._outbox, []
            self.sink(items)
            return
        deliver(self._mailboxes, self._outbox)
        self._outbox = []

    def _generate(self) -> None:
        """Run the batch until nobody is left in it: each step first admits waiting requests
        (prefilled on their own, then joined to the running batch), then decodes one token
        for every row."""
        torch = self.torch
        batch: _Batch | None = None
        with torch.inference_mode():
            while True:
                room = self.max_batch - (len(batch.live) if batch else 0)
                if batch is None:
                    self._await_burst(room)
                joining = self._admit(room) if batch is None or self._join_now(room, len(batch.live)) else []
                if joining:
                    new = self._prefill_apart(joining)
                    if batch is not None and batch.dead:
                        batch = batch.compact()  # make room: the dead rows leave before the join
                    batch = new if batch is None else batch.join(new)
                    if batch is not None:
                        self.running = len(batch.live)
                        self.max_batch_seen = max(self.max_batch_seen, self.running)
                    self._flush()
                if batch is None or not batch.live:
                    return
                b = batch
                b.mask = torch.cat([b.mask, b.mask.new_ones((len(b.rows), 1))], dim=-1)
                step = torch.tensor(b.next_ids, device=self.device).unsqueeze(-1)
                t_step = time.perf_counter()
                out = self.model(
                    input_ids=step,
                    attention_mask=b.mask,
                    position_ids=b.pos,
                    **cache_kwargs(self.model, b.cache),
                    use_cache=True,
                )
                b.cache, b.pos = output_cache(out), b.pos + 1
                self.step_s = 0.9 * self.step_s + 0.1 * (time.perf_counter() - t_step)
                logits, live = out.logits[:, -1, :].float(), b.live
                rows = [b.rows[i] for i in live]
                # The seen-token records are kept (and copied past dead rows) only while a row
                # uses the repetition penalty: the others never read them.
                seen = b.seen if any(r.req.params.repetition_penalty != 1.0 for r in rows) else None
                counts = b.counts
                if b.dead:
                    idx = torch.tensor(live, device=logits.device)
                    logits = logits[idx]
                    seen = seen[idx] if seen is not None else None
                    counts = counts[idx] if counts is not None else None
                ids, keep = self._step(logits, rows, seen, counts)
                if b.dead:  # the penalties' records, updated on the copies
                    if seen is not None:
                        b.seen[idx] = seen
                    if counts is not None:
                        b.counts[idx] = counts
                for i, tok in zip(live, ids, strict=True):
                    b.next_ids[i] = tok
                b.live = [live[j] for j in keep]
                self._flush()
                # Dead rows still cost a token of compute each step; once they are a quarter of
                # the batch they are taken out (one copy of the cache instead of one per finish).
                batch = b.compact() if b.dead * 4 >= len(b.rows) else b
                self.running = len(batch.live) if batch else 0

    def _prefill_apart(self, reqs: list[GenRequest]) -> _Batch | None:
        """`_prefill` of a group; if it fails, each request is prefilled on its own, so a
        request whose prompt cannot be run fails alone."""
        try:
            return self._prefill(reqs)
        except Exception as e:
            if len(reqs) == 1:
                self._fail(_Row(reqs[0]), f"the prompt could not be run: {type(e).__name__}: {e}")
                return None
        batch = None
        for r in reqs:
            one = self._prefill_apart([r])
            batch = one if batch is None else batch.join(one)
        return batch

    def _prefill(self, reqs: list[GenRequest]) -> _Batch | None:
        """Run the prompts of `reqs` (left-padded) and sample each one's first token."""
        torch = self.torch
        self.batches += 1
        self.prompt_tokens += sum(len(r.prompt_ids) for r in reqs)
        rows = [_Row(r, generator=make_generator(r.params.seed, self.device)) for r in reqs]
        width = max(len(r.prompt_ids) for r in reqs)
        input_ids = torch.full((len(reqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for i, r in enumerate(reqs):
            n = len(r.prompt_ids)
            input_ids[i, width - n :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[i, width - n :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        seen = torch.zeros((len(reqs), self.vocab), dtype=torch.bool, device=self.device)
        seen.scatter_(1, input_ids.clamp(max=self.vocab - 1), mask.bool())
        # Only the last position's logits are needed, unless someone asked for the prompt's
        # logprobs: projecting every prompt position onto the vocabulary was a fifth of the
        # prefill's cost on the tiny model.
        scoring = any(r.prompt_logprobs is not None for r in reqs)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=0 if scoring else 1,
        )
        if scoring:
            for i, r in enumerate(reqs):
                if r.prompt_logprobs is not None:
                    n = len(r.prompt_ids)
                    self._emit(r, Delta("", prompt_logprobs=self._prompt_logprobs(out.logits[i, width - n :], r)))
        keep, ids = [], []
        for i, row in enumerate(rows):  # max_tokens 0: scored, nothing to generate
            if row.req.params.max_new_tokens <= 0:
                self._finish(row.req, Delta("", "length", 0))
            else:
                keep.append(i)
        if not keep:
            return None
        counts = None
        if any(uses_counts(r.params) for r in reqs):
            counts = torch.zeros((len(reqs), self.vocab), dtype=torch.float32, device=self.device)
        batch = _Batch(rows, [0] * len(rows), output_cache(out), mask, positions[:, -1:] + 1, seen, counts=counts)
        batch = batch.select(keep)
        ids, keep = self._step(out.logits[keep, -1, :].float(), batch.rows, batch.seen, batch.counts)
        batch.next_ids = ids
        return batch.select(keep)

    def _prompt_logprobs(self, logits: Any, req: GenRequest) -> list[TokenLogprob]:
        """Each prompt token's logprob given the tokens before it (`logits`: the prompt's
        positions, unpadded), with the top `req.prompt_logprobs` at each position."""
        torch = self.torch
        lp = torch.log_softmax(logits[:-1].float(), -1)
        ids = req.prompt_ids
        chosen = lp.gather(1, torch.tensor(ids[1:], device=lp.device).unsqueeze(-1)).squeeze(-1).tolist()
        k = req.prompt_logprobs or 0
        tops = torch.topk(lp, k, dim=-1) if k else None
        out = [TokenLogprob(ids[0], None)]
        for j, tok in enumerate(ids[1:]):
            top = list(zip(tops.indices[j].tolist(), tops.values[j].tolist(), strict=True)) if k else []
            out.append(TokenLogprob(tok, chosen[j], top))
        return out

    def _step(self, logits: Any, rows: list[_Row], seen: Any, counts: Any = None) -> tuple[list[int], list[int]]:
        """Pick, record and emit one token for every row; returns the picked ids and the
        indices of the rows still running. A row whose constraint, sampling or
        detokenizing fails is ended with an error here; the others are not touched."""
        torch = self.torch
        errors: list[str | None] = [None] * len(rows)
        masked = logits
        for i, row in enumerate(rows):
            if row.req.constraint is None and row.req.logit_bias is None:
                continue
            if masked is logits:
                masked = logits.clone()
            try:
                if row.req.logit_bias:
                    bias = row.req.logit_bias
                    ids = torch.tensor(list(bias), device=logits.device)
                    masked[i, ids] += torch.tensor(list(bias.values()), device=logits.device)
                if row.req.constraint is not None:
                    row.req.constraint.mask(masked[i])
            except Exception as e:
                errors[i] = f"structured output failed: {type(e).__name__}: {e}"
        toks, sample_errors = sample(masked, [r.req.params for r in rows], seen, [r.generator for r in rows], counts)
        want = [i for i, r in enumerate(rows) if r.req.logprobs is not None]
        if want:
            lp = torch.log_softmax(logits[want], -1)
        keep = []
        for i, (row, tok) in enumerate(zip(rows, toks, strict=True)):
            err = errors[i] or sample_errors[i]
            if err is None:
                try:
                    if row.req.logprobs is not None:
                        j = want.index(i)
                        k = row.req.logprobs
                        top = torch.topk(lp[j], k) if k else None
                        pairs = list(zip(top.indices.tolist(), top.values.tolist(), strict=True)) if k else []
                        row.pending.append(TokenLogprob(tok, float(lp[j, tok]), pairs))
                    if self._advance(row, tok):
                        keep.append(i)
                    continue
                except Exception as e:
                    err = f"generation failed: {type(e).__name__}: {e}"
            self._fail(row, err)
        if keep and (seen is not None or counts is not None):
            idx = torch.tensor(keep, device=logits.device)
            picked = torch.tensor([toks[i] for i in keep], device=logits.device)
            if seen is not None:
                seen[idx, picked] = True
            if counts is not None:
                counts[idx, picked] += 1
        return toks, keep

    def _advance(self, row: _Row, tok: int) -> bool:
        """Record one token for `row`, queue its new text; False when the row is done."""
        req, p = row.req, row.req.params
        if req.cancelled.is_set():
            self.cancelled += 1
            self._finish(req, Delta("", "cancelled", len(row.ids)))
            return False
        finish = None
        if tok in self.stop_ids and not req.ignore_eos:
            finish = "stop"
            row.pending = [t for t in row.pending if t.id != tok]  # the end token is not output
        else:
            row.ids.append(tok)
            self.generated_tokens += 1
            if req.first_token_at is None:
                req.first_token_at = time.perf_counter()
            self._detokenize(row, final=False)
        if req.constraint is not None and finish is None:
            req.constraint.accept(tok)
            if req.constraint.done():
                finish = "stop"
        text, hit = row.text, False
        if p.stop:  # only the new text can complete a stop string: search from just before it
            text, hit = apply_stop(row.text, p.stop, max(0, row.checked - row.hold))
            row.checked = len(row.text)
        if hit:
            finish = "stop"
        elif finish is None and (
            len(row.ids) >= p.max_new_tokens or len(req.prompt_ids) + len(row.ids) >= self.max_model_len
        ):
            finish = "length"
        if finish is None:
            # Hold back anything that may be the start of a stop string.
            safe = len(text) - row.hold
            if safe > row.sent:
                self._emit(req, Delta(text[row.sent : safe], logprobs=self._take(row)))
                row.sent = safe
            return True
        if not hit:
            self._detokenize(row, final=True)
            text = apply_stop(row.text, p.stop)[0]
        self._finish(req, Delta(text[row.sent :], finish, len(row.ids), logprobs=self._take(row)))
        return False

    @staticmethod
    def _take(row: _Row) -> list[TokenLogprob] | None:
        if row.req.logprobs is None:
            return None
        taken, row.pending = row.pending, []
        return taken

    def _detokenize(self, row: _Row, final: bool) -> None:
        """Append the text of new tokens to `row.text`, decoding a short window rather than the
        whole reply each step; a character split across tokens waits for its last byte."""
        if self._rust_tok is not None:
            if final:
                return  # the stream has given every whole character already; a split one is dropped
            if row.stream is None:
                row.stream = self._decode_stream(skip_special_tokens=True)
            piece = row.stream.step(self._rust_tok, row.ids[-1])
            if piece:
                row.text += piece
            return
        decode = self.tokenizer.decode
        before = decode(row.ids[row.prefix_offset : row.read_offset], skip_special_tokens=True)
        after = decode(row.ids[row.prefix_offset :], skip_special_tokens=True)
        if final:
            row.text += after[len(before) :].replace("\ufffd", "")
        elif len(after) > len(before) and (
            not after.endswith("\ufffd") or len(row.ids) - row.read_offset > 4
        ):
            # (past 4 tokens a UTF-8 character cannot still be incomplete: the bytes are invalid)
            row.text += after[len(before) :]
            row.prefix_offset, row.read_offset = row.read_offset, len(row.ids)


def _join_caches(cache: Any, mask: Any, new_cache: Any, new_mask: Any):
    """Stack two batches' KV caches (and attention masks) into one, left-padding the shorter
    in time; padded slots are masked out, so every row attends to exactly its own tokens."""
    import torch
    import torch.nn.functional as F

    gap = mask.shape[1] - new_mask.shape[1]
    if gap > 0:
        new_mask = F.pad(new_mask, (gap, 0))
    elif gap < 0:
        mask = F.pad(mask, (-gap, 0))
    for old, new in zip(cache.layers, new_cache.layers, strict=True):
        ok, ov, nk, nv = old.keys, old.values, new.keys, new.values
        if gap > 0:
            nk, nv = F.pad(nk, (0, 0, gap, 0)), F.pad(nv, (0, 0, gap, 0))
        elif gap < 0:
            ok, ov = F.pad(ok, (0, 0, -gap, 0)), F.pad(ov, (0, 0, -gap, 0))
        old.keys, old.values = torch.cat([ok, nk]), torch.cat([ov, nv])
    return cache, torch.cat([mask, new_mask])
