"""The one sampler: how the next token is picked from a model's logits on every local path.

The engine (`discmed.engine.core`) calls `sample` on each decode step of its batch, and every
local path — `discmed chat`, data and eval jobs, `discmed serve`, GRPO rollouts — generates
through the engine, so the same `GenParams` and seed give the same tokens everywhere.

Order, as in vLLM: repetition penalty (on tokens seen in the prompt or the reply), frequency
and presence penalties (on tokens of the reply), then greedy rows by argmax, the rest by
temperature, top-k, top-p and min-p, drawn from the row's own seeded generator when it has one. A row whose distribution is broken
(NaN, all masked) is reported in `errors` rather than raised, so a caller that batches many
requests can fail that one alone.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from discmed.contract import GenParams

# Below this temperature a request is greedy (vLLM's _SAMPLING_EPS): dividing logits by 1e-38
# overflows to inf and the softmax to NaN.
TEMPERATURE_EPS = 1e-5
# Floors that keep the arithmetic finite in float32 (5e-324 is a valid JSON number).
TOP_P_FLOOR = 1e-6
REPETITION_PENALTY_RANGE = (1e-3, 1e3)
SEED_RANGE = (-(2**63), 2**64 - 1)  # what torch.Generator.manual_seed accepts
PENALTY_RANGE = (-2.0, 2.0)  # OpenAI's frequency_penalty and presence_penalty


def normalized(p: GenParams) -> GenParams:
    """`p` with values that cannot be computed in float32 moved to their safe equivalents:
    a temperature below TEMPERATURE_EPS is greedy, top_p and the repetition penalty are held
    within their floors, min_p within [0, 1]. The app applies it at the edge; the sampler
    applies it again so a caller that skipped the edge cannot poison a batch."""
    lo, hi = REPETITION_PENALTY_RANGE
    return replace(
        p,
        temperature=0.0 if p.temperature < TEMPERATURE_EPS else p.temperature,
        top_p=min(max(p.top_p, TOP_P_FLOOR), 1.0),
        min_p=min(max(p.min_p, 0.0), 1.0),
        repetition_penalty=min(max(p.repetition_penalty, lo), hi),
        frequency_penalty=min(max(p.frequency_penalty, PENALTY_RANGE[0]), PENALTY_RANGE[1]),
        presence_penalty=min(max(p.presence_penalty, PENALTY_RANGE[0]), PENALTY_RANGE[1]),
    )


def make_generator(seed: int | None, device: Any = "cpu"):
    """A torch generator for a seeded request (None for an unseeded one)."""
    import torch

    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


def sample(
    logits: Any, params: list[GenParams], seen: Any | None, generators: list[Any] | None = None,
    counts: Any | None = None,
) -> tuple[list[int], list[str | None]]:
    """Next token per row of `logits` (batch × vocab, float32) and an error per row (None if
    fine). `seen` (batch × vocab, bool) marks tokens the repetition penalty applies to;
    `counts` (batch × vocab) how often each token was generated, for the frequency and
    presence penalties (None when no row has them)."""
    import torch

    n = logits.shape[0]
    ps = [p if _is_normal(p) else normalized(p) for p in params]
    generators = generators or [None] * n
    dev = logits.device
    if seen is not None and any(p.repetition_penalty != 1.0 for p in ps):
        # Only the seen tokens change (a prompt and a reply: a few hundred of the vocabulary),
        # so they are gathered and written back rather than the whole batch × vocab rescaled.
        r, c = seen.nonzero(as_tuple=True)
        penalty = torch.tensor([p.repetition_penalty for p in ps], device=dev)[r]
        vals = logits[r, c]
        logits = logits.clone()
        logits[r, c] = torch.where(vals > 0, vals / penalty, vals * penalty)
    if counts is not None and any(uses_counts(p) for p in ps):
        freq = torch.tensor([p.frequency_penalty for p in ps], device=dev).unsqueeze(-1)
        pres = torch.tensor([p.presence_penalty for p in ps], device=dev).unsqueeze(-1)
        logits = logits - freq * counts - pres * (counts > 0)
    greedy, broken = greedy_pick(logits)
    chosen = greedy
    errors: list[str | None] = [None] * n
    for i, p in enumerate(ps):  # -inf is a masked token; NaN, or nothing left, is broken
        if broken[i] and p.temperature == 0:
            errors[i] = "sampling failed: the logits are not finite"
    rows = [i for i, p in enumerate(ps) if p.temperature > 0]
    if not rows:
        return chosen, errors
    x = logits[rows] / torch.tensor([ps[i].temperature for i in rows], device=dev).unsqueeze(-1)
    for j, i in enumerate(rows):  # top-k is rare: per row
        k = ps[i].top_k
        if k and 0 < k < x.shape[-1]:
            kth = torch.topk(x[j], k).values[-1]
            x[j] = x[j].masked_fill(x[j] < kth, float("-inf"))
    probs = torch.softmax(x, -1)
    top_p = torch.tensor([ps[i].top_p for i in rows], device=dev).unsqueeze(-1)
    if (top_p < 1.0).any():
        probs = nucleus(probs, top_p)
    min_p = torch.tensor([ps[i].min_p for i in rows], device=dev).unsqueeze(-1)
    if (min_p > 0).any():
        probs = probs.masked_fill(probs < min_p * probs.max(-1, keepdim=True).values, 0.0)
    ok = (torch.isfinite(probs).all(-1) & (probs.sum(-1) > 0)).tolist()
    unseeded = [j for j, i in enumerate(rows) if ok[j] and generators[i] is None]
    if unseeded:
        drawn = torch.multinomial(probs[unseeded], 1).squeeze(-1).tolist()
        for j, tok in zip(unseeded, drawn, strict=True):
            chosen[rows[j]] = tok
    for j, i in enumerate(rows):
        if not ok[j]:
            errors[i] = "sampling failed: the next-token distribution is not finite"
        elif generators[i] is not None:  # a seeded request draws from its own generator
            chosen[i] = int(torch.multinomial(probs[j], 1, generator=generators[i]))
    return chosen, errors


def nucleus(probs: Any, top_p: Any) -> Any:
    """`probs` (rows × vocab) with every token outside its row's top-p nucleus set to 0: the
    smallest set of most likely tokens whose mass reaches top_p (a token is kept while the mass
    of the tokens more likely than it is at most top_p).

    Found from the sorted *values* alone: the nucleus is a prefix of the sorted row, so its size
    and its least likely probability (tau) say which tokens are in it, and no permutation is
    needed. torch's CPU sort with indices cost 6.4 ms a step for 16 rows of the tiny model's
    6,000 tokens on one thread, a third of a decode step (benchmarks/gym_rollout.py's sampled
    LLM patient): it grew with the batch while the forward barely did. NumPy sorts the values
    of those rows in 0.5 ms. The cumulative sums are torch's over the same values in the same
    order, so each row keeps the same tokens, with the same values, as sorting it whole did;
    where tokens tied with tau straddle the nucleus' edge (which of them an unstable sort kept
    was arbitrary), the lowest ids are kept."""
    import numpy as np
    import torch

    if probs.device.type == "cpu":
        vals = torch.from_numpy(np.ascontiguousarray(np.sort(probs.detach().numpy(), axis=-1)[:, ::-1]))
    else:
        vals = probs.sort(-1, descending=True).values
    size = (vals.cumsum(-1) - vals <= top_p).sum(-1, keepdim=True).clamp(min=1)
    tau = vals.gather(-1, size - 1)
    keep = probs >= tau
    straddle = ((keep.sum(-1, keepdim=True) > size) & (tau > 0)).squeeze(-1)
    for r in straddle.nonzero().flatten().tolist():  # rare: exact ties at the edge
        tied = (probs[r] == tau[r]).nonzero().flatten()
        keep[r, tied[int(size[r]) - int((probs[r] > tau[r]).sum()):]] = False
    return probs.masked_fill(~keep, 0.0)


def greedy_pick(logits: Any) -> tuple[list[int], list[bool]]:
    """Each row's argmax (the first, on ties) and whether the row is broken: its maximum is NaN
    if any logit is (max propagates NaN), -inf if every token is masked. One pass over the
    batch, not one per row: this runs on every decode step.

    On CPU through NumPy: torch's index-returning reductions (max with indices, argmax, topk)
    took ~620 µs on a 64 × 6,000 batch on one thread here, NumPy's argmax and max ~50 µs each,
    with the same first-maximum rule."""
    import numpy as np
    import torch

    if logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.float64, torch.float16):
        arr = logits.detach().numpy()
        top = arr.max(-1)
        return arr.argmax(-1).tolist(), (np.isnan(top) | np.isneginf(top)).tolist()
    top, idx = logits.max(-1)
    ids, broken = torch.stack([idx, (torch.isnan(top) | torch.isneginf(top)).long()]).tolist()
    return ids, [bool(b) for b in broken]


def uses_counts(p: GenParams) -> bool:
    """Whether `p` needs the counts of generated tokens (frequency or presence penalty)."""
    return bool(p.frequency_penalty or p.presence_penalty)


def _is_normal(p: GenParams) -> bool:
    lo, hi = REPETITION_PENALTY_RANGE
    return (
        (p.temperature == 0 or p.temperature >= TEMPERATURE_EPS)
        and TOP_P_FLOOR <= p.top_p <= 1.0
        and 0.0 <= p.min_p <= 1.0
        and lo <= p.repetition_penalty <= hi
        and PENALTY_RANGE[0] <= p.frequency_penalty <= PENALTY_RANGE[1]
        and PENALTY_RANGE[0] <= p.presence_penalty <= PENALTY_RANGE[1]
    )
