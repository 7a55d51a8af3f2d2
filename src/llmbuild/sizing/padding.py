"""Padding arithmetic for a training set: the share of the tokens a step processes that are padding,
with batches padded to their longest sample or packed into rows (LLaMA-Factory's `neat_packing`).

Pure functions over sample lengths in tokens; the train stage counts the lengths, `packing_choice`
decides, and bench/gpu_train.py measures the same shares on the GPU.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

PAD_TO_MULTIPLE_OF = 8   # LLaMA-Factory's SFT collator pads each batch to a multiple of 8 tokens


def padded_share(lengths: list[int], batch_size: int, cutoff_len: int, seed: int) -> float:
    """Padding over all tokens when batches of `batch_size` samples, drawn in a seeded random order
    (the HF Trainer shuffles), are padded to their longest (truncated at cutoff_len) sample."""
    order = [min(n, cutoff_len) for n in lengths]
    random.Random(seed).shuffle(order)
    real = total = 0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        longest = -(-max(batch) // PAD_TO_MULTIPLE_OF) * PAD_TO_MULTIPLE_OF
        real, total = real + sum(batch), total + longest * len(batch)
    return 1 - real / total if total else 0.0


def greedy_knapsack(lengths: list[int], capacity: int) -> list[list[int]]:
    """LLaMA-Factory 0.9.5's packing (data/processor/processor_utils.py): the longest sample that
    still fits goes into the current row, until none does."""
    numbers, rows = sorted(lengths), []
    while numbers:
        row, room = [], capacity
        while True:
            index = bisect.bisect(numbers, room) - 1
            if index < 0:
                break
            room -= numbers[index]
            row.append(numbers.pop(index))
        rows.append(row)
    return rows


def packed_rows(lengths: list[int], cutoff_len: int) -> int:
    """Rows with packing: LLaMA-Factory 0.9.5 packs into cutoff_len - 1 tokens (data_args.py: "avoid
    pad_to_multiple_of"), each sample cut to that length first, as an unpacked one is cut to cutoff_len."""
    capacity = cutoff_len - 1
    return len(greedy_knapsack([min(n, capacity) for n in lengths], capacity))


def packed_share(lengths: list[int], cutoff_len: int) -> float:
    """Padding over all tokens when the samples are packed into rows of cutoff_len tokens each."""
    rows = packed_rows(lengths, cutoff_len)
    kept = sum(min(n, cutoff_len - 1) for n in lengths)
    return 1 - kept / (rows * cutoff_len) if rows else 0.0


@dataclass(frozen=True)
class PackingChoice:
    pack: bool
    padded: float            # share of padding tokens in padded batches
    packed: float            # ... in packed rows
    truncated: int           # samples longer than train.cutoff_len, cut to it (packed or not; none is dropped)
    reason: str


def packing_choice(lengths: list[int], batch_size: int, cutoff_len: int, seed: int,
                   wanted: bool | None) -> PackingChoice:
    """Whether to pack (`wanted` None: when packing leaves less padding)."""
    padded = padded_share(lengths, batch_size, cutoff_len, seed)
    packed = packed_share(lengths, cutoff_len)
    truncated = sum(n > cutoff_len - 1 for n in lengths)
    shares = (f"padding {padded:.1%} of the tokens in batches of {batch_size}, "
              f"{packed:.1%} packed into rows of {cutoff_len}")
    if wanted is not None:
        pack, why = wanted, f"train.neat_packing={str(wanted).lower()}"
    else:
        pack = packed < padded
        why = "packed: less padding" if pack else "not packed: packing would not pad less"
    if truncated:
        why += (f"; {truncated} of {len(lengths)} samples are longer than train.cutoff_len and are trained on "
                f"their first {cutoff_len - 1 if pack else cutoff_len} tokens")
    return PackingChoice(pack, padded, packed, truncated, f"{why} ({shares})")
