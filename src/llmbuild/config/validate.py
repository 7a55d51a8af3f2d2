"""Rules a type annotation cannot express. Each failure names the key, its file and the fix."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig, OmegaConf

from ..chat.modelfile import MESSAGE_ROLES, ModelfileError, quote
from ..chat.templates import hf_chat_template, ollama_template
from ..errors import ConfigError, StageError
from ..facts.chat_families import FAMILIES, builtin
from ..facts.gguf_files import is_size
from ..facts.quant_types import CONVERT_TYPES, QUANT_TYPES
from ..facts.secrets import MASK, TOOL_CREDENTIALS, is_secret
from ..files.templates import TemplateDir
from .derived import chat_family

VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def validate(cfg: DictConfig, where: Callable[[str], str], root: Path | None = None) -> None:
    """`root`: the project, whose chat templates are parsed here too (a broken one would otherwise
    be found after training)."""
    def fail(key: str, value, rule: str, fix: str) -> None:
        raise ConfigError(f"config key '{key}' = {value!r} in {where(key)}: {rule}. {fix}")

    def one_of(key: str, value, allowed) -> None:
        if value not in allowed:
            close = difflib.get_close_matches(str(value), list(allowed), n=1)
            hint = f"Did you mean '{close[0]}'? " if close else ""
            fail(key, value, "not a valid choice", f"{hint}Valid: {', '.join(allowed)}.")

    if cfg.name is not None and not VARIANT_NAME.match(cfg.name):
        fail("name", cfg.name, "not a name a folder and an Ollama model can both carry",
             "Use 1 to 80 letters, digits, '.', '_' or '-', starting with a letter or digit, e.g. name=quill-v2.")
    for name, value in (cfg.train.extra or {}).items():
        if is_secret(str(name)) and str(name) not in TOOL_CREDENTIALS and value not in (None, ""):
            fail(f"train.extra.{name}", MASK, "a credential that llmbuild cannot hand to LLaMA-Factory through "
                 "its environment, and no artifact may hold one",
                 f"Set it in the environment LLaMA-Factory's libraries read instead (supported here: "
                 f"{', '.join(f'train.extra.{k} as {v}' for k, v in TOOL_CREDENTIALS.items())}).")
    one_of("quant.type", cfg.quant.type, list(QUANT_TYPES))
    one_of("quant.convert_type", cfg.quant.convert_type, list(CONVERT_TYPES))
    if cfg.quant.split_max_size is not None and not is_size(cfg.quant.split_max_size):
        fail("quant.split_max_size", cfg.quant.split_max_size, "not a size", "Write it as llama.cpp does: 500M or 2G.")
    if cfg.model.chat_format is not None:
        one_of("model.chat_format", cfg.model.chat_format, list(FAMILIES))
    if cfg.prompt.template is not None:
        one_of("prompt.template", cfg.prompt.template, builtin())
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
    for key, allowed, rule, fix in RANGES:
        value = OmegaConf.select(cfg, key)
        if value is not None and not allowed(value):
            fail(key, value, rule, fix)
    _check_modelfile_text(cfg, fail)
    if root is not None:
        _check_templates(cfg, root)


def _check_templates(cfg: DictConfig, root: Path) -> None:
    """llmbuild's own template files of the named family (the model's own template, and the family
    detected from it, are checked when the build reads the model)."""
    if chat_family(cfg) is None:
        return
    family = FAMILIES[chat_family(cfg)]
    templates = TemplateDir(root)
    try:
        if family.builtin:
            hf_chat_template(templates.text(family.chat_template), cfg.prompt.system or "", family.chat_template)
        if cfg.target.ollama is not None:
            ollama_template(templates.text(family.ollama_template), "", family.ollama_template)
    except FileNotFoundError as err:
        raise ConfigError(f"the {family.name} chat family's template {err.filename} is missing; restore it "
                          f"(git checkout templates/)") from None
    except StageError as err:
        raise ConfigError(str(err)) from None


def _check_modelfile_text(cfg: DictConfig, fail) -> None:
    """Text that goes into the Ollama Modelfile must survive its quoting (no escapes exist): found
    here, not after training."""
    if cfg.target.ollama is None:
        return
    texts = [("prompt.system", cfg.prompt.system), ("model.license", cfg.model.license),
             *((f"prompt.stop[{i}]", s) for i, s in enumerate(cfg.prompt.stop)),
             *((f"target.ollama.messages[{i}].content", m.content) for i, m in enumerate(cfg.target.ollama.messages))]
    for key, text in texts:
        if text:
            try:
                quote(str(text), key)
            except ModelfileError as err:
                fail(key, str(text)[:40] + ("..." if len(str(text)) > 40 else ""), "an Ollama Modelfile cannot hold it",
                     str(err).split(": ", 1)[-1])
    for i, message in enumerate(cfg.target.ollama.messages):
        if message.role not in MESSAGE_ROLES:
            fail(f"target.ollama.messages[{i}].role", message.role, "not a role Ollama's MESSAGE takes",
                 f"Use {', '.join(MESSAGE_ROLES)}.")


def _positive(value) -> bool:
    return value > 0


def _port(value) -> bool:
    return 1 <= value <= 65535


# numeric keys with a range: (key, test, the rule, the fix). Keys of a target that is off are skipped.
RANGES = (
    ("prompt.temperature", lambda v: v >= 0, "must be 0 or more", "0 is greedy; 0.7 is usual."),
    ("prompt.top_p", lambda v: 0 < v <= 1, "must be in (0, 1]", "1.0 turns it off; 0.9 is usual."),
    ("prompt.top_k", lambda v: v >= 0, "must be 0 or more", "0 turns it off; 40 is usual."),
    ("prompt.repeat_penalty", _positive, "must be positive", "1.0 turns it off; 1.1 is usual."),
    ("prompt.num_ctx", _positive, "must be a positive number of tokens", "Use e.g. 2048 or 4096."),
    ("prompt.num_predict", lambda v: v >= -2 and v != 0, "must be positive, -1 (until a stop) or -2 (fill the context)",
     "Use -1 unless answers must be cut."),
    ("train.num_train_epochs", lambda v: v >= 0, "must be 0 or more", "Use e.g. 3."),
    ("train.warmup_steps", lambda v: v >= 0, "must be 0 or more", "Use 0 to warm up by train.warmup_ratio."),
    ("train.weight_decay", lambda v: v >= 0, "must be 0 or more", "0.0 to 0.1 is usual."),
    ("train.max_grad_norm", lambda v: v >= 0, "must be 0 or more", "1.0 is usual; 0 turns clipping off."),
    ("train.logging_steps", _positive, "must be positive", "Use e.g. 10."),
    ("train.save_steps", _positive, "must be positive", "Use e.g. 500."),
    ("train.preprocessing_num_workers", _positive, "must be positive (or null)", "Use the CPU cores to spare."),
    ("train.gpu_memory_gib", _positive, "must be positive (or null)", "Give the GPU's memory, e.g. 79.6."),
    ("dataset.max_samples", _positive, "must be positive (or null for every row)", "Use e.g. 100."),
    ("quant.nthread", lambda v: v >= 0, "must be 0 (every core) or more", "Use 0."),
    ("smoke.n_ctx", _positive, "must be a positive number of tokens", "Use e.g. 1024."),
    ("eval.n_gpu_layers", lambda v: v >= -1, "must be -1 (all) or more", "0 runs on the CPU."),
    ("eval.recommend_kld", _positive, "must be positive", "0.05 is the default."),
    ("target.llamacpp.port", _port, "not a TCP port", "Use 1 to 65535, e.g. 8080."),
    ("target.llamacpp.n_ctx", _positive, "must be a positive number of tokens", "Use e.g. 4096."),
    ("target.llamacpp.n_gpu_layers", lambda v: v >= -1, "must be -1 (all) or more", "0 runs on the CPU."),
    ("target.vllm.port", _port, "not a TCP port", "Use 1 to 65535, e.g. 8000."),
    ("target.vllm.max_model_len", _positive, "must be a positive number of tokens (or null)", "Use e.g. 8192."),
)
