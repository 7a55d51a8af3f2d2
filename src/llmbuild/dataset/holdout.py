"""Which rows eval holds out of training: a fraction or a count, chosen by a seed, in file order."""

from __future__ import annotations

import random

from ..errors import DataError


def holdout_indices(rows: int, holdout: float, seed: int) -> list[int]:
    """Which of `rows` rows are held out: a fraction (< 1) or a count, chosen by `seed`, in file order."""
    count = int(holdout) if holdout >= 1 else round(rows * holdout)
    count = max(count, 1) if holdout > 0 else 0
    if count >= rows:
        raise DataError(f"dataset.holdout = {holdout} holds out {count} of {rows} rows and leaves nothing to train on. "
                        f"Use a smaller holdout or add rows.")
    return sorted(random.Random(seed).sample(range(rows), count))
