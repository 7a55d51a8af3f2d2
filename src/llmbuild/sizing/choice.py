"""The per-device batch a configuration trains with on its GPU (`train.auto_batch`): the one place
that decides it. `doit size` and `doit plan` show it, the train stage trains with it; all three call
`batch_choice` with the model's shape, so they agree.

Every input is in the train key: train.* (gpu_memory_gib, gpu_memory_headroom, the effective batch,
cutoff_len, liger_kernel and stage, neat_packing, optim), lora.*, and the base model (its shape), which the train
stage's upstream key covers.
"""

from __future__ import annotations

from omegaconf import DictConfig

from ..facts.train_methods import fused_loss
from ..files.devices import devices_in_force
from .memory import (
    GIB,
    BatchChoice,
    ModelShape,
    TrainSetup,
    choose_batch,
    lora_modules,
    lora_parameters,
    optimizer_state_bytes,
    whole_modules,
)


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
