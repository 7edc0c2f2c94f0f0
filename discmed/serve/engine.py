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
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from discmed.backend import GenParams, apply_stop

log = logging.getLogger("discmed.serve")


class QueueFull(RuntimeError):
    """The engine has `max_queue` requests waiting or running already."""


@dataclass
class Delta:
    """One step of output: new text, and when the request ends, why and how many tokens."""

    text: str
    finish_reason: str | None = None  # "stop" | "length" | "error" | "cancelled"
    completion_tokens: int = 0
    error: str | None = None


@dataclass(eq=False)  # compared and hashed by identity
class GenRequest:
    prompt_ids: list[int]
    params: GenParams
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    ignore_eos: bool = False  # keep generating past the stop tokens (benchmarks, tests)
    arrived: float = field(default_factory=time.perf_counter)

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


class BatchEngine:
    """Dynamic batching over `model` (a transformers causal LM) on one background thread."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        stop_token_ids: list[int],
        *,
        max_batch: int = 32,
        max_queue: int = 256,
        max_model_len: int | None = None,
    ):
        import torch

        self.torch = torch
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_token_ids)
        self.max_batch = max_batch
        self.max_queue = max_queue
        cfg = getattr(model, "config", None)
        self.max_model_len = max_model_len or int(getattr(cfg, "max_position_embeddings", 0) or 4096)
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
        self._thread = threading.Thread(target=self._run, name="discmed-engine", daemon=True)
        # The engine thread runs Python between torch ops; with the default 5 ms GIL switch
        # interval the event loop (which streams the tokens out) could wait that long for
        # every token. A shorter interval keeps streaming latency low.
        if sys.getswitchinterval() > 0.001:
            sys.setswitchinterval(0.001)
        self.batches = 0  # counters shown by /health: prefill groups, widest batch, cancellations
        self.max_batch_seen = 0
        self.cancelled = 0
        self._thread.start()

    # -- public ---------------------------------------------------------------------------

    def submit(
        self,
        prompt_ids: list[int],
        params: GenParams,
        loop: asyncio.AbstractEventLoop,
        ignore_eos: bool = False,
    ) -> GenRequest:
        with self._lock:
            if self._active >= self.max_queue:
                raise QueueFull(
                    f"the server is busy: {self._active} requests queued or running (limit {self.max_queue})"
                )
            self._active += 1
        req = GenRequest(prompt_ids, params, loop, ignore_eos=ignore_eos)
        self._waiting.put(req)
        return req

    @property
    def load(self) -> int:
        return self._active

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
            except Exception as e:  # a bug or OOM must not kill the thread or hang clients
                log.exception("generation failed")
                for r in list(self._running):
                    self._finish(r, Delta("", "error", error=f"generation failed: {type(e).__name__}: {e}"))
            self._flush()

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
        self._running.discard(req)
        with self._lock:
            self._active -= 1

    def _flush(self) -> None:
        """Hand this step's deltas to the event loops that wait for them."""
        if not self._outbox:
            return
        by_loop: dict[int, list] = {}
        for item in self._outbox:
            by_loop.setdefault(id(item[0].loop), []).append(item)
        for items in by_loop.values():
            loop = items[0][0].loop
            box = self._mailboxes.get(id(loop))
            if box is None or box.loop is not loop:
                box = self._mailboxes[id(loop)] = _Mailbox(loop)
            box.post(items)
        self._outbox = []

    def _generate(self) -> None:
        """Run the batch until nobody is left in it: each step first admits waiting requests
        (prefilled on their own, then joined to the running batch), then decodes one token
        for every row."""
        torch = self.torch
        rows: list[_Row] = []
        next_ids: list[int] = []
        cache = mask = pos = seen = None
        with torch.inference_mode():
            while True:
                joining = self._admit(self.max_batch - len(rows))
                if joining:
                    j_rows, j_ids, j_cache, j_mask, j_pos, j_seen = self._prefill(joining)
                    if j_rows and rows:
                        cache, mask = _join_caches(cache, mask, j_cache, j_mask)
                        pos, seen = torch.cat([pos, j_pos]), torch.cat([seen, j_seen])
                    elif j_rows:
                        cache, mask, pos, seen = j_cache, j_mask, j_pos, j_seen
                    rows += j_rows
                    next_ids += j_ids
                    self.max_batch_seen = max(self.max_batch_seen, len(rows))
                    self._flush()
                if not rows:
                    return
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=-1)
                step = torch.tensor(next_ids, device=self.device).unsqueeze(-1)
                out = self.model(
                    input_ids=step,
                    attention_mask=mask,
                    position_ids=pos,
                    past_key_values=cache,
                    use_cache=True,
                )
                cache, pos = out.past_key_values, pos + 1
                next_ids = self._sample(out.logits[:, -1, :].float(), rows, seen)
                seen[torch.arange(len(rows)), torch.tensor(next_ids)] = True
                keep = [
                    i
                    for i, (row, tok) in enumerate(zip(rows, next_ids, strict=True))
                    if self._advance(row, tok)
                ]
                self._flush()
                if len(keep) < len(rows):  # drop finished and cancelled rows from the batch
                    if not keep:
                        rows, next_ids, cache = [], [], None
                        continue
                    idx = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(idx)
                    mask, pos, seen = mask[idx], pos[idx], seen[idx]
                    next_ids = [next_ids[i] for i in keep]
                    rows = [rows[i] for i in keep]

    def _prefill(self, reqs: list[GenRequest]):
        """Run the prompts of `reqs` (left-padded) and sample each one's first token.
        Returns the rows still running with their next ids, KV cache, mask, positions, seen."""
        torch = self.torch
        self.batches += 1
        rows = [_Row(r) for r in reqs]
        for row in rows:
            if row.req.params.seed is not None:
                row.generator = torch.Generator(device=self.device).manual_seed(row.req.params.seed)
        width = max(len(r.prompt_ids) for r in reqs)
        input_ids = torch.full((len(reqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(reqs), width), dtype=torch.long)
        for i, r in enumerate(reqs):
            n = len(r.prompt_ids)
            input_ids[i, width - n :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            mask[i, width - n :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        seen = torch.zeros((len(reqs), vocab), dtype=torch.bool, device=self.device)
        seen.scatter_(1, input_ids.clamp(max=vocab - 1), mask.bool())
        # Only the last position's logits are needed: projecting every prompt position onto the
        # vocabulary was a fifth of the prefill's cost on the tiny model.
        out = self.model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
        )
        cache = out.past_key_values
        first = self._sample(out.logits[:, -1, :].float(), rows, seen)
        seen[torch.arange(len(rows)), torch.tensor(first)] = True
        keep = [i for i, (row, tok) in enumerate(zip(rows, first, strict=True)) if self._advance(row, tok)]
        pos = positions[:, -1:] + 1
        if len(keep) < len(rows):
            if not keep:
                return [], [], None, None, None, None
            idx = torch.tensor(keep, device=self.device)
            cache.batch_select_indices(idx)
            mask, pos, seen = mask[idx], pos[idx], seen[idx]
        return [rows[i] for i in keep], [first[i] for i in keep], cache, mask, pos, seen

    def _sample(self, logits: Any, rows: list[_Row], seen: Any) -> list[int]:
        """Next token per row, vectorized over the batch: repetition penalty (on tokens seen in
        prompt or reply), greedy rows by argmax, the rest by temperature, top-k and top-p."""
        torch = self.torch
        ps = [r.req.params for r in rows]
        penalty = torch.tensor([p.repetition_penalty for p in ps], device=logits.device).unsqueeze(-1)
        if (penalty != 1.0).any():
            scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
            logits = torch.where(seen, scaled, logits)
        greedy = logits.argmax(-1)
        temps = [p.temperature for p in ps]
        if all(t == 0 for t in temps):
            return greedy.tolist()
        temp = torch.tensor([t if t > 0 else 1.0 for t in temps], device=logits.device).unsqueeze(-1)
        x = logits / temp
        for i, p in enumerate(ps):  # top-k is rare: per row
            if p.top_k and 0 < p.top_k < x.shape[-1]:
                kth = torch.topk(x[i], p.top_k).values[-1]
                x[i] = x[i].masked_fill(x[i] < kth, float("-inf"))
        probs = torch.softmax(x, -1)
        top_p = torch.tensor([p.top_p for p in ps], device=logits.device).unsqueeze(-1)
        if (top_p < 1.0).any():
            sp, si = probs.sort(-1, descending=True)
            sp = sp.masked_fill(sp.cumsum(-1) - sp > top_p, 0.0)  # smallest set reaching top_p
            probs = torch.zeros_like(probs).scatter(-1, si, sp)
        drawn = torch.multinomial(probs, 1).squeeze(-1)
        chosen = torch.where(
            torch.tensor([t == 0 for t in temps], device=logits.device), greedy, drawn
        ).tolist()
        for i, row in enumerate(rows):  # a seeded request draws from its own generator
            if row.generator is not None and temps[i] > 0:
                chosen[i] = int(torch.multinomial(probs[i], 1, generator=row.generator))
        return chosen

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
        else:
            row.ids.append(tok)
            self._detokenize(row, final=False)
        text, hit = apply_stop(row.text, p.stop)
        if hit:
            finish = "stop"
        elif len(row.ids) >= p.max_new_tokens or len(req.prompt_ids) + len(row.ids) >= self.max_model_len:
            finish = "length"
        if finish is None:
            # Hold back anything that may be the start of a stop string.
            safe = len(text) - max((len(s) - 1 for s in p.stop), default=0)
            if safe > row.sent:
                self._emit(req, Delta(text[row.sent : safe]))
                row.sent = safe
            return True
        if not hit:
            self._detokenize(row, final=True)
            text = apply_stop(row.text, p.stop)[0]
        self._finish(req, Delta(text[row.sent :], finish, len(row.ids)))
        return False

    def _detokenize(self, row: _Row, final: bool) -> None:
        """Append the text of new tokens to `row.text`, decoding a short window rather than the
        whole reply each step; a character split across tokens waits for its last byte."""
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
