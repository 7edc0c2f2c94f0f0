"""Packing: whole conversations into rows of `max_length` tokens, padding-free.

The bin packing is TRL's best-fit-decreasing (`trl.pack_dataset(strategy="bfd")`): the longest
conversations are placed first, each into the fullest row that still has room, so rows fill to
~99% and no conversation is ever split (every encoded conversation is already at most
`max_length` long, so BFD's truncation never fires; `pack` checks that). Each row keeps a
`seq_lengths` column; TRL's padding-free collator turns it into position ids that restart at 0
for each conversation. From those position ids the model knows the boundaries: flash-attention
kernels get `cu_seq_lens`, and sdpa/eager (CPU) get a block-diagonal causal mask built by
transformers' `find_packed_sequence_indices`, so no token attends across a conversation.

The loss is unchanged by packing: HF Trainer (and TRL) divide the summed token loss by the number
of target tokens in the whole optimizer step (`num_items_in_batch`), whether those tokens sit
in one packed row or many padded ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class PackStats:
    """What packing did: rows out of sequences, and how full the rows are."""

    sequences: int
    rows: int
    tokens: int
    target_tokens: int
    max_length: int
    fill: float  # tokens / (rows * max_length): the fraction of a fixed-size row holding data
    padded_fraction: float  # the pad share a padded (unpacked) batch of these sequences would have

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pad_fraction(lengths: list[int], batch_size: int) -> float:
    """Share of pad tokens when `lengths` are batched in order and padded to each batch's longest."""
    total = padded = 0
    for i in range(0, len(lengths), batch_size):
        chunk = lengths[i : i + batch_size]
        total += sum(chunk)
        padded += max(chunk) * len(chunk)
    return 1.0 - total / padded if padded else 0.0


def pack(dataset: Any, max_length: int, batch_size: int = 1) -> tuple[Any, PackStats]:
    """Pack a dataset of `input_ids` + `labels` rows (one conversation each) with BFD.

    Returns the packed dataset (`input_ids`, `labels`, `seq_lengths`) and its statistics.
    """
    from trl import pack_dataset

    lengths = [len(x) for x in dataset["input_ids"]]
    if lengths and max(lengths) > max_length:
        # BFD would silently cut this conversation; the formats cut at turn boundaries instead.
        raise ValueError(
            f"a sequence of {max(lengths)} tokens exceeds max_length {max_length}: encode with it first"
        )
    target = sum(sum(1 for t in lab if t != -100) for lab in dataset["labels"])
    packed = pack_dataset(dataset.select_columns(["input_ids", "labels"]), max_length, strategy="bfd")
    rows = len(packed)
    tokens = sum(lengths)
    stats = PackStats(
        sequences=len(lengths),
        rows=rows,
        tokens=tokens,
        target_tokens=target,
        max_length=max_length,
        fill=tokens / (rows * max_length) if rows else 0.0,
        padded_fraction=pad_fraction(lengths, batch_size),
    )
    return packed, stats


def position_ids(seq_lengths: list[int]) -> list[int]:
    """Position ids of one packed row: 0..n-1 for each conversation in turn."""
    return [p for n in seq_lengths for p in range(n)]
