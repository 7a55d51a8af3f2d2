"""Rules a type annotation cannot express. Each failure names the key, its file and the fix."""

from __future__ import annotations

import difflib
from typing import Callable

from omegaconf import DictConfig

from ..errors import ConfigError
from ..facts.chat_families import FAMILIES
from ..facts.gguf_files import is_size
from ..facts.quant_types import CONVERT_TYPES, QUANT_TYPES
from .derived import chat_family


def validate(cfg: DictConfig, where: Callable[[str], str]) -> None:
    def fail(key: str, value, rule: str, fix: str) -> None:
        raise ConfigError(f"config key '{key}' = {value!r} in {where(key)}: {rule}. {fix}")

    def one_of(key: str, value, allowed) -> None:
        if value not in allowed:
            close = difflib.get_close_matches(str(value), list(allowed), n=1)
            hint = f"Did you mean '{close[0]}'? " if close else ""
            fail(key, value, "not a valid choice", f"{hint}Valid: {', '.join(allowed)}.")

    one_of("quant.type", cfg.quant.type, list(QUANT_TYPES))
    one_of("quant.convert_type", cfg.quant.convert_type, list(CONVERT_TYPES))
    if cfg.quant.split_max_size is not None and not is_size(cfg.quant.split_max_size):
        fail("quant.split_max_size", cfg.quant.split_max_size, "not a size", "Write it as llama.cpp does: 500M or 2G.")
    key = "prompt.template" if cfg.prompt.template else "model.chat_format"
    one_of(key, chat_family(cfg), list(FAMILIES))
    if not cfg.model.path and not cfg.model.hub_id:
        fail("model.path", None, "the model has neither a local path nor a hub id",
             "Set model.path to an HF folder or a .gguf file.")
    if cfg.lora.r <= 0:
        fail("lora.r", cfg.lora.r, "the LoRA rank must be positive", "Typical values: 8, 16, 32, 64.")
    if cfg.lora.alpha is not None and cfg.lora.alpha <= 0:
        fail("lora.alpha", cfg.lora.alpha, "must be positive", "The usual choice, and the default, is alpha = 2 x r.")
    if not 0.0 <= cfg.lora.dropout < 1.0:
        fail("lora.dropout", cfg.lora.dropout, "must be in [0, 1)", "0.0 to 0.1 is usual.")
    if cfg.lora.quantization_bit not in (None, 4, 8):
        fail("lora.quantization_bit", cfg.lora.quantization_bit, "QLoRA loads the base in 4 or 8 bits",
             "Use 4, 8 or null.")
    if not cfg.lora.target:
        fail("lora.target", list(cfg.lora.target), "no modules to adapt", "Use [all] or names like [q_proj, v_proj].")
    if cfg.train.bf16 and cfg.train.fp16:
        fail("train.fp16", True, "bf16 and fp16 are both on",
             "Pick one: bf16 on Ampere or newer GPUs, fp16 on older ones.")
    if cfg.train.learning_rate <= 0:
        fail("train.learning_rate", cfg.train.learning_rate, "must be positive", "LoRA SFT usually uses 1e-5 to 1e-3.")
    if cfg.train.max_steps <= 0 and cfg.train.num_train_epochs <= 0:
        fail("train.num_train_epochs", cfg.train.num_train_epochs, "nothing to train",
             "Set train.num_train_epochs > 0 or train.max_steps > 0.")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "cutoff_len"):
        if cfg.train[name] <= 0:
            fail(f"train.{name}", cfg.train[name], "must be positive", "Use 1 or more.")
    if not 0.0 <= cfg.train.warmup_ratio < 1.0:
        fail("train.warmup_ratio", cfg.train.warmup_ratio, "must be in [0, 1)", "0.03 to 0.1 is usual.")
    if cfg.jobs.train_at_once < 1:
        fail("jobs.train_at_once", cfg.jobs.train_at_once, "must be at least 1", "Use 1 unless you have spare GPUs.")
    if cfg.dataset.holdout < 0 or (cfg.dataset.holdout >= 1 and cfg.dataset.holdout != int(cfg.dataset.holdout)):
        fail("dataset.holdout", cfg.dataset.holdout, "a fraction below 1 or a whole number of rows",
             "Use e.g. 0.1 (10% of the rows) or 8 (eight rows); 0 holds out nothing.")
    if cfg.eval.enabled:
        for index, quant in enumerate(cfg.eval.quants):
            one_of(f"eval.quants[{index}]", quant, list(QUANT_TYPES))
        if cfg.dataset.holdout == 0:
            fail("dataset.holdout", 0, "eval needs held-out rows that training never sees",
                 "Set dataset.holdout=0.1 (or a row count), or build without eval: eval.enabled=false.")
        for name in ("max_rows", "max_new_tokens", "n_ctx"):
            if cfg.eval[name] <= 0:
                fail(f"eval.{name}", cfg.eval[name], "must be positive", "Use 1 or more.")
    if cfg.smoke.max_tokens <= 0:
        fail("smoke.max_tokens", cfg.smoke.max_tokens, "must be positive", "Use e.g. 96.")
