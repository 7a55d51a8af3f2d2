"""The per-device batch a configuration trains with on its GPU (`train.auto_batch`): the one place
that decides it. `doit size` and `doit plan` show it, the train stage trains with it; all three call
`batch_choice` with the model's shape, so they agree. `choose_batch` is the search itself, over
train_memory.py's estimate. `train_choice` is what the train stage calls: the batch and, from the
samples' lengths, the packing (padding.py), with the record for the manifest and the lines to say.

Every input is in the train key: train.* (gpu_memory_gib, gpu_memory_headroom, the effective batch,
cutoff_len, liger_kernel and stage, neat_packing, optim), lora.*, and the base model (its shape), which the train
stage's upstream key covers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..errors import ConfigError
from ..facts.train_methods import fused_loss
from ..files.devices import devices_in_force
from .padding import packing_choice
from .params import ModelShape, lora_modules, lora_parameters, whole_modules
from .shape import from_hf_config
from .train_memory import GIB, TrainMemory, TrainSetup, optimizer_state_bytes, train_memory


def configured_setup(cfg: DictConfig) -> TrainSetup:
    """The training setup as configured (before auto_batch re-splits it)."""
    train = cfg.train
    return TrainSetup(
        batch_size=train.per_device_train_batch_size, cutoff_len=train.cutoff_len,
        gradient_checkpointing=train.gradient_checkpointing, quantization_bit=cfg.lora.quantization_bit,
        gradient_accumulation_steps=train.gradient_accumulation_steps, lora_dropout=cfg.lora.dropout,
        optimizer_state_bytes=optimizer_state_bytes(train.optim),
        fused_loss=fused_loss(train.liger_kernel, train.stage),
        # packing is decided from the samples' lengths at train time: count its mask whenever it may happen,
        # so the batch does not depend on that decision
        block_mask=train.neat_packing is not False and train.stage == "sft",
        devices=devices_in_force(train.devices), strategy=train.distributed)


def additional_targets(cfg: DictConfig) -> tuple[str, ...]:
    """LLaMA-Factory's `additional_target` (modules trained in full), passed through train.extra."""
    value = cfg.train.extra.get("additional_target") if cfg.train.extra else None
    if not value:
        return ()
    names = value.split(",") if isinstance(value, str) else list(value)
    return whole_modules([str(n).strip() for n in names if str(n).strip()])


def trainable_parameters(cfg: DictConfig, shape: ModelShape) -> tuple[tuple[str, ...], int]:
    modules = lora_modules(list(cfg.lora.target))
    return modules, lora_parameters(shape, modules, cfg.lora.r, cfg.lora.dora, additional_targets(cfg))


def batch_choice(cfg: DictConfig, shape: ModelShape) -> BatchChoice | None:
    """The batch auto_batch chooses for `cfg` (its train and lora groups) on `shape`; None when
    train.auto_batch is off. A ConfigError when not even batch 1 with checkpointing fits."""
    if not cfg.train.auto_batch:
        return None
    modules, trainable = trainable_parameters(cfg, shape)
    return choose_batch(shape, modules, trainable, configured_setup(cfg), round(cfg.train.gpu_memory_gib * GIB),
                        cfg.train.gpu_memory_headroom)


@dataclass(frozen=True)
class BatchChoice:
    """The per-device batch, accumulation and checkpointing chosen for a GPU (`choose_batch`)."""

    setup: TrainSetup
    memory: TrainMemory
    budget: int              # bytes the estimate may use: the GPU's memory less the headroom
    reason: str              # why, for people: the estimate, the budget and what did not fit


def choose_batch(shape: ModelShape, modules: tuple[str, ...], trainable: int, setup: TrainSetup,
                 gpu_bytes: int, headroom: float) -> BatchChoice:
    """The largest per-device batch that fits `gpu_bytes` less `headroom` (a fraction) and divides
    the effective batch (setup's batch x accumulation, kept through accumulation); gradient
    checkpointing only when not even batch 1 fits without it. The one function that decides it:
    `doit size`, `doit plan` and the train stage call it."""
    effective = setup.batch_size * setup.gradient_accumulation_steps
    budget = int(gpu_bytes * (1 - headroom))
    where = f"{_gib(budget)} GiB ({_gib(gpu_bytes)} GiB less {headroom:.0%} headroom)"
    tried: list[str] = []
    for checkpointing in (False, True):
        for batch in (b for b in range(effective, 0, -1) if effective % b == 0):
            chosen = replace(setup, batch_size=batch, gradient_accumulation_steps=effective // batch,
                             gradient_checkpointing=checkpointing)
            memory = train_memory(shape, modules, trainable, chosen)
            if memory.total <= budget:
                how = "gradient checkpointing" if checkpointing else "no gradient checkpointing"
                why = f"; {tried[-1]}" if tried else ""
                return BatchChoice(chosen, memory, budget,
                                   f"batch {batch} x accumulation {effective // batch} (effective {effective}), {how}: "
                                   f"about {_gib(memory.total)} GiB of {where}{why}")
            if not tried or batch == 1:
                tried.append(f"batch {batch}{' with checkpointing' if checkpointing else ''} would need "
                             f"{_gib(memory.total)} GiB")
    raise ConfigError(
        f"train.gpu_memory_gib={gpu_bytes / GIB:g}: {tried[-1]}, more than {where}, so no batch fits. Lower "
        f"train.cutoff_len, train on a 4-bit base (lora.quantization_bit=4) or on a larger GPU.")


def _gib(n: float) -> str:
    return f"{n / GIB:.1f}"


@dataclass(frozen=True)
class TrainChoice:
    """The train values decided when training starts rather than configured."""

    values: dict[str, Any]    # LLaMA-Factory's training arguments that replace the configured ones
    record: dict[str, Any]    # the choices with their estimates and reasons, for the artifact's manifest
    lines: tuple[str, ...]    # what the train stage says about them


def train_choice(cfg: DictConfig, base_config: Path, lengths: list[int] | None) -> TrainChoice:
    """The batch (train.auto_batch: `batch_choice` on the shape in the base model's `base_config`,
    as `doit size` shows it) and packing (train.neat_packing None: when it pads less, padding.py)
    for the train stage's config view `cfg`. `lengths`: each chat sample's tokens as LLaMA-Factory
    encodes it; None for data that is not chat, which is never packed here."""
    values: dict[str, Any] = {}
    record: dict[str, Any] = {}
    lines: list[str] = []
    choice = batch_choice(cfg, from_hf_config(base_config)) if cfg.train.auto_batch else None
    if choice is not None:
        values.update(per_device_train_batch_size=choice.setup.batch_size,
                      gradient_accumulation_steps=choice.setup.gradient_accumulation_steps,
                      gradient_checkpointing=choice.setup.gradient_checkpointing)
        lines.append(f"train.auto_batch: {choice.reason}")
        record["batch"] = {**values, "estimate_gib": round(choice.memory.total / GIB, 2),
                           "budget_gib": round(choice.budget / GIB, 2), "why": choice.reason}
    if lengths is not None:
        batch = values.get("per_device_train_batch_size", cfg.train.per_device_train_batch_size)
        wanted = cfg.train.neat_packing if cfg.train.stage == "sft" else False
        packing = packing_choice(lengths, batch, cfg.train.cutoff_len, cfg.train.seed, wanted)
        values["neat_packing"] = packing.pack
        lines.append(f"padding: {packing.reason}")
        record["padding"] = {"neat_packing": packing.pack, "padded_share": round(packing.padded, 4),
                             "packed_share": round(packing.packed, 4), "truncated": packing.truncated,
                             "why": packing.reason}
    return TrainChoice(values, record, tuple(lines))
