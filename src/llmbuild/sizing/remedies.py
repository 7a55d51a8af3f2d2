"""What else would fit when a training does not fit its GPU: the usual out-of-memory remedies, each
as the `TrainSetup` fields it changes, with the memory it would need (train_memory.py's estimate).

No text here: report.py writes each remedy as the command-line overrides that apply it, and why.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..facts.distributed import STRATEGIES
from .params import ModelShape
from .train_memory import TrainMemory, TrainSetup, train_memory

# the remedies, by what they do
SHORTER = "shorter samples"
SMALLER_BATCHES = "smaller batches"
CHECKPOINTING = "gradient checkpointing"
FOUR_BIT = "4-bit base"
SHARDED = "sharded weights"
TOGETHER = "together"
SHORTEST_CUTOFF = 128   # a shorter cutoff is halved until it fits, down to this many tokens


@dataclass(frozen=True)
class Remedy:
    kind: str                  # one of the names above
    changes: dict[str, Any]    # the TrainSetup fields it changes, in the order a user would set them
    setup: TrainSetup
    memory: TrainMemory


def remedies(shape: ModelShape, modules: tuple[str, ...], trainable: int, setup: TrainSetup,
             budget: int) -> list[Remedy]:
    """The remedies (shorter samples, smaller batches with the same effective batch, gradient
    checkpointing, a 4-bit base, the weights sharded too) that apply to `setup`, each alone, then
    those that keep the samples whole all together, with the memory each would need."""
    def remedy(kind: str, changes: dict[str, Any]) -> Remedy:
        changed = replace(setup, **changes)
        return Remedy(kind, changes, changed, train_memory(shape, modules, trainable, changed))

    cutoff = max(setup.cutoff_len // 2, 1)
    while cutoff > SHORTEST_CUTOFF and remedy(SHORTER, {"cutoff_len": cutoff}).memory.total > budget:
        cutoff //= 2
    whole: list[tuple[str, dict[str, Any]]] = []
    if setup.batch_size > 1:
        whole.append((SMALLER_BATCHES, {"batch_size": 1,
                                        "gradient_accumulation_steps": setup.gradient_accumulation_steps
                                        * setup.batch_size}))
    if not setup.gradient_checkpointing:
        whole.append((CHECKPOINTING, {"gradient_checkpointing": True}))
    if setup.quantization_bit != 4:
        whole.append((FOUR_BIT, {"quantization_bit": 4}))
    if setup.devices > 1 and not STRATEGIES[setup.strategy].shards_weights:
        whole.append((SHARDED, {"strategy": "deepspeed-zero3"}))
    out = [remedy(SHORTER, {"cutoff_len": cutoff})] + [remedy(kind, changes) for kind, changes in whole]
    if len(whole) > 1:
        out.append(remedy(TOGETHER, {k: v for _, changes in whole for k, v in changes.items()}))
    return out
