"""The in-process engine: continuous batching on a transformers causal LM, one background thread.

One thread owns the model. Each step it first lets the scheduler admit waiting requests (their
prompts are prefilled together, then their KV cache is joined onto the running batch's), then
decodes one token for every running row: the model's forward, the shared sampler
(`discmed.engine.sampler`), the output processor (`discmed.engine.output`). A request whose
caller went away is dropped at the next step; a finished one leaves the batch (`engine.cache`),
so a long reply does not keep paying for short ones. A failure that belongs to one request (its
prompt cannot be run, its sampling or its grammar breaks) ends that request alone with an
error; only a failure of the shared step itself (out of memory) ends the whole batch.

The engine knows token ids, not chat formats, and changes no process-wide state: the switch
interval, the heap freeze and the thread count are the entry point's (`discmed.cpu.tune`).
Every local path runs on it: `HFBackend.chat/achat/stream` (`discmed chat`, data and eval
jobs), `discmed serve` (here or in a child process, `discmed.engine.proc`), GRPO rollouts.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import weakref
from typing import Any

from discmed.compat import cache_kwargs, output_cache
from discmed.engine.cache import Batch, PrefixCache, fork_prefix, shared_prefix_groups, stack_prefixes
from discmed.engine.output import Output, OutputProcessor
from discmed.engine.protocol import (
    LOGPROBS,
    PROMPT_LOGPROBS,
    STRUCTURED_OUTPUT,
    Delivery,
    Delta,
    EngineStats,
    EngineUnavailable,
    Request,
    Stream,
    TokenLogprob,
)
from discmed.engine.sampler import make_generator, sample, uses_counts
from discmed.engine.scheduler import Scheduler
from discmed.structured import Grammars

log = logging.getLogger("discmed.engine")

# Prompts admitted together that begin with this many tokens or more in common run them once
# (`LocalEngine._forward_shared`); below it, a second forward pass costs more than it saves.
MIN_SHARED_PREFIX = 32
# A prompt that begins with an earlier request's tokens (the prefix cache) joins others that did
# in one forward pass when their new parts differ by no more than this: a row then re-runs at
# most this many of its cached tokens instead of padding.
CACHED_GROUP_SLACK = 16

_ENGINES: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    # A generation still running when the interpreter exits would be torn down inside a torch op.
    for engine in list(_ENGINES):
        engine.shutdown()


class _Row:
    """A request inside the engine: its stream, output state, grammar matcher and generator."""

    __slots__ = ("stream", "out", "constraint", "generator")

    def __init__(self, stream: Stream, out: Output, constraint: Any):
        self.stream, self.out, self.constraint, self.generator = stream, out, constraint, None

    # what the scheduler reads
    @property
    def arrived(self) -> float:
        return self.stream.arrived

    @property
    def cancelled(self) -> Any:
        return self.stream.cancelled

    @property
    def request(self) -> Request:
        return self.stream.request


class LocalEngine:
    """Continuous batching over `model` (a transformers causal LM) on one background thread."""

    features = frozenset({LOGPROBS, PROMPT_LOGPROBS, STRUCTURED_OUTPUT})

    def __init__(self, model: Any, tokenizer: Any, stop_token_ids: list[int], *, max_batch: int = 32,
                 max_queue: int = 256, max_model_len: int | None = None, sink: Any = None,
                 prefix_cache_mb: int = 256):  # fmt: skip
        """`sink`, when given, takes each step's `[(stream, delta), ...]` from the engine thread
        instead of the streams' readers (the engine process sends them on). The model is used
        in the mode it is in: a backend puts it in eval mode, a GRPO rollout switches the policy.
        `prefix_cache_mb` bounds the KV caches kept from finished requests (`PrefixCache`; 0:
        none kept)."""
        import torch

        self.torch = torch
        self.model, self.tokenizer = model, tokenizer
        self.stop_ids = set(stop_token_ids)
        self.max_batch = max_batch
        cfg = getattr(model, "config", None)
        self.max_model_len = max_model_len or int(getattr(cfg, "max_position_embeddings", 0) or 4096)
        self.vocab = model.get_output_embeddings().weight.shape[0]
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (tokenizer.eos_token_id or 0)
        self.device = next(model.parameters()).device
        self.scheduler = Scheduler(max_batch, max_queue)
        self.prefix = PrefixCache(model, prefix_cache_mb << 20, MIN_SHARED_PREFIX)
        self.output = OutputProcessor(tokenizer, sorted(self.stop_ids), self.max_model_len)
        self._deliver = sink or Delivery()
        self._outbox: list[tuple[Stream, Delta]] = []  # deltas of this step, sent together
        self._running: set[_Row] = set()
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._grammars: Any = None
        # counters, read through stats()
        self.batches = self.max_batch_seen = self.running = self.cancelled = self.failed = 0
        self.prompt_tokens = self.generated_tokens = self.shared_prefix_tokens = self.prefix_cache_tokens = 0
        self.mean_seconds, self.step_s = 1.0, 0.0
        self._thread = threading.Thread(target=self._run, name="discmed-engine", daemon=True)
        self._thread.start()
        _ENGINES.add(self)

    # -- the contract ---------------------------------------------------------------------

    def submit(self, request: Request, loop: Any = None, rid: int | None = None) -> Stream:
        """Queue a request; its deltas go to `loop` (an asyncio loop) or, without one, to a
        thread-safe queue. Raises QueueFull when `max_queue` requests are in already."""
        if self._stop.is_set():
            raise EngineUnavailable("the engine has been shut down")
        stream = Stream(request, loop, self, rid if rid is not None else next(self._ids))
        constraint = self.grammars.constraint(request.grammar) if request.grammar is not None else None
        self.scheduler.add(_Row(stream, self.output.start(request), constraint))
        return stream

    def abort(self, stream: Stream) -> None:
        """Stop a request; it ends with finish_reason "cancelled" at the engine's next step."""
        stream.cancelled.set()

    def stats(self) -> EngineStats:
        return EngineStats(
            load=self.scheduler.load, queued=self.scheduler.queued, running=self.running, max_batch=self.max_batch,
            batches=self.batches, max_batch_seen=self.max_batch_seen, cancelled=self.cancelled, failed=self.failed,
            prompt_tokens=self.prompt_tokens, generated_tokens=self.generated_tokens,
            shared_prefix_tokens=self.shared_prefix_tokens, prefix_cache_tokens=self.prefix_cache_tokens,
            mean_seconds=self.mean_seconds, step_s=self.step_s, alive=not self._stop.is_set(),
        )  # fmt: skip

    def shutdown(self) -> None:
        """Stop the thread; requests still waiting or running end with an error saying so."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    @property
    def grammars(self):
        """Structured-output grammars for this engine's tokenizer (built on first use)."""
        if self._grammars is None:
            self._grammars = Grammars(self.tokenizer, self.vocab, sorted(self.stop_ids))
        return self._grammars

    # -- the engine thread ----------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.scheduler.next_idle(timeout=0.1):
                continue
            try:
                self._generate()
            except Exception as e:  # the shared step failed (OOM, a bug): nobody can go on
                log.exception("generation failed")
                for row in list(self._running):
                    self._finish(row, self.output.finish(row.out, "error", error=f"generation failed: {type(e).__name__}: {e}"))
            self.running = 0
            self._flush()
        gone = "the engine has been shut down"
        for row in list(self._running) + self.scheduler.drain():
            self._finish(row, self.output.finish(row.out, "error", error=gone))
        self._flush()

    def _emit(self, row: _Row, delta: Delta) -> None:
        self._outbox.append((row.stream, delta))

    def _finish(self, row: _Row, delta: Delta) -> None:
        self._outbox.append((row.stream, delta))
        self.mean_seconds = 0.9 * self.mean_seconds + 0.1 * (time.perf_counter() - row.arrived)
        self._running.discard(row)
        self.scheduler.finished()

    def _fail(self, row: _Row, message: str) -> None:
        log.warning("request failed alone: %s", message)
        self.failed += 1
        self._finish(row, self.output.finish(row.out, "error", error=message))

    def _cancel(self, row: _Row) -> None:
        self.cancelled += 1
        self._finish(row, self.output.finish(row.out, "cancelled"))

    def _flush(self) -> None:
        """Hand this step's deltas to whoever reads them."""
        if self._outbox:
            items, self._outbox = self._outbox, []
            self._deliver(items)

    def _admit(self, room: int) -> list[_Row]:
        taken, cancelled = self.scheduler.admit(room)
        for row in cancelled:
            self._cancel(row)
        self._running.update(taken)
        return taken

    def _generate(self) -> None:
        """Run the batch until nobody is left in it: each step first admits waiting requests
        (prefilled on their own, then joined to the running batch), then decodes one token
        for every row."""
        torch, sched = self.torch, self.scheduler
        batch: Batch | None = None
        with torch.inference_mode():
            while not self._stop.is_set():
                room = self.max_batch - (len(batch.live) if batch else 0)
                if batch is None:
                    sched.await_burst(room)
                joining = (self._admit(room) if batch is None or sched.join_now(room, len(batch.live), self.step_s)
                           else [])  # fmt: skip
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
                batch = self._decode(batch)
                self.running = len(batch.live) if batch else 0

    def _decode(self, b: Batch) -> Batch | None:
        """One token for every live row of `b`."""
        torch = self.torch
        b.mask = torch.cat([b.mask, b.mask.new_ones((len(b.rows), 1))], dim=-1)
        step = torch.tensor(b.next_ids, device=self.device).unsqueeze(-1)
        t_step = time.perf_counter()
        out = self.model(input_ids=step, attention_mask=b.mask, position_ids=b.pos,
                         **cache_kwargs(self.model, b.cache), use_cache=True)  # fmt: skip
        b.cache, b.pos = output_cache(out), b.pos + 1
        self.step_s = 0.9 * self.step_s + 0.1 * (time.perf_counter() - t_step)
        logits, live = out.logits[:, -1, :].float(), b.live
        rows = [b.rows[i] for i in live]
        # The seen-token records are kept (and copied past dead rows) only while a row uses the
        # repetition penalty: the others never read them.
        seen = b.seen if any(r.request.params.repetition_penalty != 1.0 for r in rows) else None
        counts = b.counts
        if b.dead:
            idx = torch.tensor(live, device=logits.device)
            logits = logits[idx]
            seen = seen[idx] if seen is not None else None
            counts = counts[idx] if counts is not None else None
        ids, keep = self._step(logits, rows, seen, counts)
        if len(keep) < len(rows) and self.prefix.budget:
            kept = set(keep)
            for j in range(len(rows)):
                if j not in kept:
                    self._keep_prefix(b, live[j])
        if b.dead:  # the penalties' records, updated on the copies
            if seen is not None:
                b.seen[idx] = seen
            if counts is not None:
                b.counts[idx] = counts
        for i, tok in zip(live, ids, strict=True):
            b.next_ids[i] = tok
        b.live = [live[j] for j in keep]
        self._flush()
        # Dead rows still cost a token of compute each step; once they are a quarter of the
        # batch they are taken out (one copy of the cache instead of one per finish).
        return b.compact() if b.dead * 4 >= len(b.rows) else b

    def _keep_prefix(self, b: Batch, i: int) -> None:
        """Row i of `b` has just ended: its KV cache (every token fed so far, the last columns of
        its row: rows are left-padded) goes to the prefix cache under the ids it holds."""
        row = b.rows[i]
        held = int(b.mask[i].sum())
        ids = (list(row.request.prompt_ids) + row.out.ids)[:held]
        start = b.mask.shape[1] - held
        n = len(ids)
        layers = [(layer.keys[i : i + 1, :, start : start + n].clone(), layer.values[i : i + 1, :, start : start + n].clone())
                  for layer in b.cache.layers]  # fmt: skip
        self.prefix.add(ids, layers)

    def _prefill_apart(self, rows: list[_Row]) -> Batch | None:
        """`_prefill` of a group; if it fails, each request is prefilled on its own, so a
        request whose prompt cannot be run fails alone."""
        try:
            return self._prefill(rows)
        except Exception as e:
            if len(rows) == 1:
                self._fail(rows[0], f"the prompt could not be run: {type(e).__name__}: {e}")
                return None
        batch = None
        for r in rows:
            one = self._prefill_apart([r])
            batch = one if batch is None else batch.join(one)
        return batch

    def _prefill(self, rows: list[_Row]) -> Batch | None:
        """Run the prompts of `rows` and sample each one's first token. Prompts that begin with
        the same long prefix (G samples of one GRPO case, turns of patients told the same case, a
        long shared system prompt) run that prefix once (`_forward_shared`); the rest run
        together, left-padded."""
        reqs = [r.request for r in rows]
        self.batches += 1
        self.prompt_tokens += sum(len(r.prompt_ids) for r in reqs)
        for r in rows:
            r.generator = make_generator(r.request.params.seed, self.device)
        scoring = any(r.prompt_logprobs is not None for r in reqs)
        hits = {} if scoring else {i: hit for i, r in enumerate(reqs) if (hit := self.prefix.longest(r.prompt_ids))[0]}
        rest = [i for i in range(len(rows)) if i not in hits]
        groups = ([] if scoring or len(rest) < 2
                  else [([rest[j] for j in idx], p) for idx, p in
                        shared_prefix_groups([reqs[i].prompt_ids for i in rest], MIN_SHARED_PREFIX)])  # fmt: skip
        grouped = {i for idx, _ in groups for i in idx}
        plain = [i for i in rest if i not in grouped]
        batch = None
        parts = [(idx, p, None) for idx, p in groups + ([(plain, 0)] if plain else [])]
        parts += [(idx, 0, [hits[i] for i in idx]) for idx in self._cached_groups(reqs, hits)]
        for idx, p, cached in parts:
            part = self._prefill_part([rows[i] for i in idx], p, scoring, cached)
            if part is not None:
                batch = part if batch is None else batch.join(part)
        return batch

    @staticmethod
    def _cached_groups(reqs: list[Request], hits: dict[int, tuple[int, Any]]) -> list[list[int]]:
        """The prefix-cache hits in groups that run together: by how many new tokens each has,
        a group's spread at most CACHED_GROUP_SLACK."""
        new = {i: len(reqs[i].prompt_ids) - hits[i][0] for i in hits}
        groups: list[list[int]] = []
        for i in sorted(hits, key=new.get):
            if groups and new[i] - new[groups[-1][0]] <= CACHED_GROUP_SLACK:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def _prefill_part(self, rows: list[_Row], shared: int, scoring: bool, cached: list | None = None) -> Batch | None:
        """`_prefill` of prompts that share their first `shared` tokens (0: none), or whose
        starts are in the prefix cache (`cached`: each one's (tokens held, layers))."""
        torch = self.torch
        reqs = [r.request for r in rows]
        if cached:
            out, mask, positions = self._forward_cached(reqs, cached)
        elif shared:
            out, mask, positions = self._forward_shared(reqs, shared)
        else:
            out, mask, positions = self._forward_padded(reqs, scoring)
        width = mask.shape[1]
        seen = torch.zeros((len(reqs), self.vocab), dtype=torch.bool, device=self.device)
        for i, r in enumerate(reqs):
            seen[i, torch.tensor(r.prompt_ids, device=self.device).clamp(max=self.vocab - 1)] = True
        if scoring:
            for i, row in enumerate(rows):
                if row.request.prompt_logprobs is not None:
                    n = len(row.request.prompt_ids)
                    entries = self._prompt_logprobs(out.logits[i, width - n :], row.request)
                    delta = self.output.prompt_logprobs(row.out, entries)
                    if delta is not None:
                        self._emit(row, delta)
        keep = []
        for i, row in enumerate(rows):  # max_tokens 0: scored, nothing to generate
            if row.request.params.max_new_tokens <= 0:
                self._finish(row, self.output.finish(row.out, "length"))
            else:
                keep.append(i)
        if not keep:
            return None
        counts = None
        if any(uses_counts(r.params) for r in reqs):
            counts = torch.zeros((len(reqs), self.vocab), dtype=torch.float32, device=self.device)
        batch = Batch(rows, [0] * len(rows), output_cache(out), mask, positions[:, -1:] + 1, seen, counts=counts)
        batch = batch.select(keep)
        ids, keep = self._step(out.logits[keep, -1, :].float(), batch.rows, batch.seen, batch.counts)
        batch.next_ids = ids
        return batch.select(keep)

    def _forward_padded(self, reqs: list[Request], scoring: bool) -> tuple[Any, Any, Any]:
        """The prompts, left-padded to one width, in one forward pass: (output, mask, positions)."""
        torch = self.torch
        width = max(len(r.prompt_ids) for r in reqs)
        input_ids = torch.full((len(reqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for i, r in enumerate(reqs):
            n = len(r.prompt_ids)
            input_ids[i, width - n :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[i, width - n :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # Only the last position's logits are needed, unless someone asked for the prompt's
        # logprobs: projecting every prompt position onto the vocabulary was a fifth of the
        # prefill's cost on the tiny model.
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=0 if scoring else 1)  # fmt: skip
        return out, mask, positions

    def _forward_shared(self, reqs: list[Request], shared: int) -> tuple[Any, Any, Any]:
        """Prompts whose first `shared` tokens are the same: that prefix once (batch 1), its KV
        cache forked to every row (`engine.cache.fork_prefix`), then each row's remaining
        tokens — as many as the longest row has, a shorter row re-running the last few of the
        prefix instead of padding — in one pass on top. On CPU a prefill costs in proportion
        to its tokens, so eight patients told the same 770-token case cost one case, not eight."""
        torch, dev = self.torch, self.device
        prefix = torch.tensor([reqs[0].prompt_ids[:shared]], device=dev)
        self.shared_prefix_tokens += shared * (len(reqs) - 1)
        pre = self.model(input_ids=prefix, position_ids=torch.arange(shared, device=dev)[None], use_cache=True,
                         logits_to_keep=1)  # fmt: skip
        width = max(len(r.prompt_ids) for r in reqs) - shared
        shifts = [shared + width - len(r.prompt_ids) for r in reqs]
        cache, cache_mask = fork_prefix(output_cache(pre), shifts, dev)
        ids = torch.tensor([r.prompt_ids[shared - s :] for r, s in zip(reqs, shifts, strict=True)], device=dev)
        positions = torch.stack([torch.arange(len(r.prompt_ids) - width, len(r.prompt_ids), device=dev) for r in reqs])
        mask = torch.cat([cache_mask, torch.ones_like(ids)], dim=1)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **cache_kwargs(self.model, cache))  # fmt: skip
        return out, mask, positions

    def _forward_cached(self, reqs: list[Request], cached: list[tuple[int, Any]]) -> tuple[Any, Any, Any]:
        """Prompts whose first tokens are in the prefix cache: each row's cached KV (as much of
        it as leaves every row the same number of tokens to run, the longest new part), then
        those tokens in one pass on top — `_forward_shared` with a prefix of each row's own."""
        torch, dev = self.torch, self.device
        width = max(len(r.prompt_ids) - held for r, (held, _) in zip(reqs, cached, strict=True))
        lengths = [len(r.prompt_ids) - width for r in reqs]
        self.prefix_cache_tokens += sum(lengths)
        cache, cache_mask = stack_prefixes([layers for _, layers in cached], lengths, dev)
        ids = torch.tensor([r.prompt_ids[n:] for r, n in zip(reqs, lengths, strict=True)], device=dev)
        positions = torch.stack([torch.arange(n, n + width, device=dev) for n in lengths])
        mask = torch.cat([cache_mask, torch.ones_like(ids)], dim=1)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **cache_kwargs(self.model, cache))  # fmt: skip
        return out, mask, positions

    def _prompt_logprobs(self, logits: Any, req: Request) -> list[TokenLogprob]:
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
            req = row.request
            if row.constraint is None and req.logit_bias is None:
                continue
            if masked is logits:
                masked = logits.clone()
            try:
                if req.logit_bias:
                    bias = req.logit_bias
                    ids = torch.tensor(list(bias), device=logits.device)
                    masked[i, ids] += torch.tensor(list(bias.values()), device=logits.device)
                if row.constraint is not None:
                    row.constraint.mask(masked[i])
            except Exception as e:
                errors[i] = f"structured output failed: {type(e).__name__}: {e}"
        toks, sample_errors = sample(masked, [r.request.params for r in rows], seen, [r.generator for r in rows],
                                     counts)  # fmt: skip
        want = [i for i, r in enumerate(rows) if r.request.logprobs is not None]
        lp = torch.log_softmax(logits[want], -1) if want else None
        keep = []
        for i, (row, tok) in enumerate(zip(rows, toks, strict=True)):
            err = errors[i] or sample_errors[i]
            if err is None:
                try:
                    if row.stream.cancelled.is_set():
                        self._cancel(row)
                        continue
                    entry = None
                    if row.request.logprobs is not None:
                        j, k = want.index(i), row.request.logprobs
                        top = torch.topk(lp[j], k) if k else None
                        pairs = list(zip(top.indices.tolist(), top.values.tolist(), strict=True)) if k else []
                        entry = TokenLogprob(tok, float(lp[j, tok]), pairs)
                    if self._advance(row, tok, entry):
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

    def _advance(self, row: _Row, tok: int, entry: TokenLogprob | None) -> bool:
        """Record one token for `row` and queue what it shows; False when the row is done."""
        grammar_done = False
        is_end = tok in self.stop_ids and not row.request.ignore_eos
        if not is_end:
            self.generated_tokens += 1
            if row.constraint is not None:
                row.constraint.accept(tok)
                grammar_done = row.constraint.done()
        delta, done = self.output.step(row.out, tok, entry, grammar_done)
        if done:
            self._finish(row, delta)
        elif delta is not None:
            self._emit(row, delta)
        return not done
