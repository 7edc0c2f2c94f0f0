"""The running batch's tensors: its KV cache, attention mask, positions and penalty records,
and the two operations continuous batching needs on them — join another batch, keep a subset.

This is the only module that reaches into transformers' cache (`cache.layers[i].keys` and
`.values`, tensors of batch × heads × time × dim): the scheduler decides who joins and who
leaves, this module moves the tensors. Rows are left-padded to a common width; a padded slot is
masked out, so every row attends to exactly its own tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Batch:
    """The running batch: its rows (the engine's per-request state, opaque here), each row's
    next input id, and the tensors they share.

    A finished row is not taken out of the tensors at once (that copies the whole KV cache):
    it stays as a dead row, outside `live`, until enough have finished to be worth a copy or
    room is needed for joining requests (`compact`)."""

    rows: list[Any]
    next_ids: list[int]
    cache: Any
    mask: Any  # batch × width, 1 on real tokens
    pos: Any  # batch × 1, the position of each row's next token
    seen: Any  # batch × vocab, bool: tokens the repetition penalty applies to (prompt and reply)
    live: list[int] = field(default_factory=list)  # indices of the rows still generating
    counts: Any = None  # batch × vocab, generated-token counts (frequency/presence), where a row has them

    def __post_init__(self) -> None:
        if not self.live:
            self.live = list(range(len(self.rows)))
        growing(self.cache)

    @property
    def dead(self) -> int:
        return len(self.rows) - len(self.live)

    def compact(self) -> Batch | None:
        return self.select(self.live)

    def join(self, other: Batch | None) -> Batch:
        """`other`'s rows appended to this batch's (the shorter side left-padded in time)."""
        import torch

        if other is None or not other.rows:
            return self
        if not self.rows:
            return other
        self.cache, self.mask = join_caches(self.cache, self.mask, other.cache, other.mask)
        if self.counts is not None or other.counts is not None:  # a side without counts has none yet
            self.counts = torch.cat([_counts(self), _counts(other)])
        self.pos, self.seen = torch.cat([self.pos, other.pos]), torch.cat([self.seen, other.seen])
        self.live += [len(self.rows) + i for i in other.live]
        self.rows += other.rows
        self.next_ids += other.next_ids
        return self

    def select(self, keep: list[int]) -> Batch | None:
        """Only the rows `keep` (indices), in that order; None when none is kept."""
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


def growing(cache: Any) -> Any:
    """Make `cache`'s plain dynamic layers append in place (`GrowingLayer`); other layer kinds
    (sliding windows, a model's own cache) are left as they are. Returns the cache."""
    from transformers.cache_utils import DynamicLayer

    for layer in getattr(cache, "layers", ()):
        if type(layer) is DynamicLayer:
            layer.__class__ = _growing_layer_class()
    return cache


def _growing_layer_class() -> type:
    global _GROWING
    if _GROWING is None:
        from transformers.cache_utils import DynamicLayer

        class GrowingLayer(DynamicLayer):
            """A dynamic KV layer that appends a step's keys and values into spare room at the
            end of its buffer instead of concatenating (transformers' `DynamicLayer.update`
            copies the whole cache every decode step: at 8 rows of 300 tokens that copy was half
            of the tiny model's step). `keys` and `values` stay views of the buffers' filled
            part, so every reader sees what a `DynamicLayer` shows. When the batch's tensors are
            replaced from outside (`Batch.select`, `join_caches`, `fork_prefix`) the next update
            adopts them into a new buffer: one copy, as one concatenation would have cost."""

            _kbuf = _vbuf = _kview = _vview = None

            def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
                if not self.is_initialized:
                    self.lazy_initialization(key_states, value_states)
                n, m = (self.keys.shape[-2] if self.keys.dim() == 4 else 0), key_states.shape[-2]
                if self.keys is not self._kview or self.values is not self._vview or n + m > self._kbuf.shape[-2]:
                    self._adopt(key_states, value_states, n, n + m + max(GROW_MIN, (n + m) // GROW_DIV))
                self._kbuf[:, :, n : n + m] = key_states
                self._vbuf[:, :, n : n + m] = value_states
                self.keys, self.values = self._kbuf[:, :, : n + m], self._vbuf[:, :, : n + m]
                self._kview, self._vview = self.keys, self.values
                return self.keys, self.values

            def _adopt(self, key_states: Any, value_states: Any, n: int, room: int) -> None:
                b, h, _, d = key_states.shape
                kbuf = key_states.new_empty((b, h, room, d))
                vbuf = value_states.new_empty((b, h, room, value_states.shape[-1]))
                if n:
                    kbuf[:, :, :n], vbuf[:, :, :n] = self.keys, self.values
                self._kbuf, self._vbuf = kbuf, vbuf

        _GROWING = GrowingLayer
    return _GROWING


# Spare room a growing layer allocates when it must copy: a quarter of what it holds, at least
# GROW_MIN tokens, so a decode copies its cache once every n/4 steps instead of every step.
GROW_MIN, GROW_DIV = 32, 4
_GROWING: type | None = None


def _counts(b: Batch) -> Any:
    import torch

    return b.counts if b.counts is not None else b.seen.new_zeros(b.seen.shape, dtype=torch.float32)


def join_caches(cache: Any, mask: Any, new_cache: Any, new_mask: Any) -> tuple[Any, Any]:
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


def shared_prefix_groups(prompts: list[list[int]], min_shared: int) -> list[tuple[list[int], int]]:
    """Groups of at least two prompts (indices into `prompts`) that begin with the same
    `min_shared` or more tokens, each with the length of its common prefix; prompts in no group
    are left out. The prefix always leaves every prompt at least one token of its own (the
    prefill of that token gives the prompt's next-token logits), and the prompts' lengths in a
    group differ by no more than the prefix (see `fork_prefix`)."""
    import itertools
    import os

    order = sorted(range(len(prompts)), key=lambda i: prompts[i])
    runs: list[list[int]] = []
    for a, b in itertools.pairwise(order):
        common = len(os.path.commonprefix([prompts[a], prompts[b]]))
        if common >= min_shared and runs and runs[-1][-1] == a:
            runs[-1].append(b)
        elif common >= min_shared:
            runs.append([a, b])
    groups = []
    for run in runs:
        ids = [prompts[i] for i in run]
        lengths = [len(p) for p in ids]
        p = min(len(os.path.commonprefix(ids)), min(lengths) - 1)
        if p >= min_shared and max(lengths) - min(lengths) <= p:
            groups.append((run, p))
    return groups


def fork_prefix(cache: Any, shifts: list[int], device: Any) -> tuple[Any, Any]:
    """One prompt prefix's KV cache (batch 1, time p) made into a cache for len(shifts) rows,
    row i holding the prefix's first p - shifts[i] tokens moved shifts[i] slots to the right
    (left padding, masked) — so that the rows' own tokens, fed next as one unpadded block of
    equal width, follow each row's cache without a gap. A key keeps the position it was
    computed at (rotary models) and real tokens stay contiguous (ALiBi's distances), so the
    result equals prefilling each prompt alone. Returns the cache and its attention mask."""
    import torch
    import torch.nn.functional as F

    p = cache.layers[0].keys.shape[2]
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)[0]  # heads × p × dim
            setattr(layer, name, torch.stack([F.pad(t[:, : p - s], (0, 0, s, 0)) for s in shifts]))
    mask = torch.ones((len(shifts), p), dtype=torch.long, device=device)
    for i, s in enumerate(shifts):
        mask[i, :s] = 0
    return cache, mask


class PrefixCache:
    """Finished requests' KV caches, kept by the token ids they hold, so that a later prompt
    that begins the same way — the next turn of a conversation, whose prompt is the last one
    plus the reply plus a new message — runs only its new tokens (vLLM's automatic prefix
    caching, here without blocks: one entry per finished request, least recently used first
    out once `budget_bytes` is spent).

    An entry is valid only for the weights that made it: `fingerprint` (the parameters' version
    counters, which every in-place update such as an optimizer step bumps, and the training
    flag, under which dropout makes the cache differ from run to run) is read at each lookup,
    and a change empties the store."""

    def __init__(self, model: Any, budget_bytes: int, min_tokens: int):
        from collections import OrderedDict

        self.model, self.budget, self.min_tokens = model, budget_bytes, min_tokens
        self.entries: OrderedDict[int, tuple[Any, list[tuple[Any, Any]], int]] = OrderedDict()
        self.bytes = 0
        self._keys = 0
        self._fingerprint = self.fingerprint()

    def fingerprint(self) -> tuple[int, bool]:
        try:
            version = sum(p._version for p in self.model.parameters())
        except RuntimeError:  # inference tensors keep no version: nothing can update them in place
            version = 0
        return version, bool(self.model.training)

    def _valid(self) -> bool:
        now = self.fingerprint()
        if now != self._fingerprint:
            self.entries.clear()
            self.bytes, self._fingerprint = 0, now
        return not now[1] and self.budget > 0

    def add(self, ids: list[int], layers: list[tuple[Any, Any]]) -> None:
        """Keep `layers` ([(keys, values)], each 1 × heads × len(ids) × dim, owning their
        storage) as the KV cache of `ids`."""
        import torch

        if len(ids) < self.min_tokens or not self._valid():
            return
        size = sum(k.nbytes + v.nbytes for k, v in layers)
        if size > self.budget:
            return
        while self.bytes + size > self.budget:
            _, (_, _, old) = self.entries.popitem(last=False)
            self.bytes -= old
        self._keys += 1
        self.entries[self._keys] = (torch.tensor(ids), layers, size)
        self.bytes += size

    def longest(self, prompt: list[int]) -> tuple[int, list[tuple[Any, Any]] | None]:
        """The most tokens at the start of `prompt` that an entry holds (at least `min_tokens`,
        and always leaving the prompt one token to run, whose logits give its first token),
        with that entry's layers; (0, None) when none does."""
        import torch

        if not self.entries or len(prompt) <= self.min_tokens or not self._valid():
            return 0, None
        want = torch.tensor(prompt[:-1])
        best, hit = 0, None
        for key, (ids, _layers, _) in self.entries.items():
            n = min(len(ids), len(want))
            if n <= best:
                continue
            differ = (ids[:n] != want[:n]).nonzero()
            same = int(differ[0]) if len(differ) else n
            if same > best:
                best, hit = same, key
        if best < self.min_tokens:
            return 0, None
        self.entries.move_to_end(hit)
        return best, self.entries[hit][1]


def stack_prefixes(prefixes: list[list[tuple[Any, Any]]], lengths: list[int], device: Any) -> tuple[Any, Any]:
    """A batch KV cache whose row i holds the first lengths[i] tokens of prefixes[i] (that row's
    own [(keys, values)] per layer, batch 1), left-padded to the longest and masked there — as
    `fork_prefix` does for one prefix shared by every row. Returns the cache and its mask."""
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache

    width = max(lengths)
    cache = DynamicCache()
    for j in range(len(prefixes[0])):
        ks = [F.pad(p[j][0][:, :, :n], (0, 0, width - n, 0)) for p, n in zip(prefixes, lengths, strict=True)]
        vs = [F.pad(p[j][1][:, :, :n], (0, 0, width - n, 0)) for p, n in zip(prefixes, lengths, strict=True)]
        cache.update(torch.cat(ks).to(device), torch.cat(vs).to(device), j)
    mask = torch.ones((len(lengths), width), dtype=torch.long, device=device)
    for i, n in enumerate(lengths):
        mask[i, : width - n] = 0
    return cache, mask
