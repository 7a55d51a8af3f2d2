"""Rules a type annotation cannot express. Each failure names the key, its file and the fix."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf

from ..chat.modelfile import MESSAGE_ROLES, ModelfileError, quote
from ..chat.templates import hf_chat_template, ollama_template
from ..errors import ConfigError, StageError
from ..facts.chat_families import FAMILIES, VLLM_TOOL_PARSERS, builtin
from ..facts.compile_modes import EAGER, LAYERS, MODEL, NONE, ROUNDINGS
from ..facts.compile_modes import MODES as COMPILE_MODES
from ..facts.distributed import AUTO, STRATEGIES
from ..facts.gguf_files import is_size
from ..facts.launchers import LAUNCHERS, RESOURCES
from ..facts.llamafactory_args import SET_BY_LLMBUILD
from ..facts.lora_targets import all_not_alone
from ..facts.quant_types import (
    CONVERT_TYPES,
    IMATRIX_OFF,
    IMATRIX_REQUIRED,
    KLD_TOKENS,
    QUANT_TYPES,
    RECOMMEND_KLD,
    TENSOR_TYPES,
    TENSOR_TYPES_NEEDING_IMATRIX,
    own_imatrix,
    uses_imatrix,
)
from ..facts.secrets import MASK, TOOL_CREDENTIALS, credential_in_url, is_secret
from ..facts.train_methods import DATA_FIELDS, DPO_LOSSES, METHODS, TEXT
from ..facts.vllm_schemes import MERGED, SCHEMES
from ..files.model_path import ACCEPTED as MODEL_PATHS
from ..files.templates import TemplateDir
from .derived import chat_family

VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
STEP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")   # a pipeline stage: part of artifact names


def _check_quant(cfg, fail) -> None:
    """quant.imatrix, the calibration settings and the per-tensor types: wrong names and impossible
    combinations, before anything is built."""
    quant = cfg.quant
    _needs_imatrix("quant.type", quant.type, cfg, fail)
    if cfg.target.ollama is not None and cfg.target.ollama.adapter and QUANT_TYPES[quant.type].imatrix == \
            IMATRIX_REQUIRED:
        fail("quant.type", quant.type, "target.ollama.adapter quantizes the base model, which has no importance "
             "matrix, and this type needs one", "Choose a k-quant (q4_k_m) or build the merged model "
             "(target.ollama.adapter=false).")
    if quant.imatrix_ctx < 16:
        fail("quant.imatrix_ctx", quant.imatrix_ctx, "too short a chunk to measure", "Use 512, llama.cpp's default.")
    if quant.imatrix_chunks is not None and quant.imatrix_chunks < 2:
        fail("quant.imatrix_chunks", quant.imatrix_chunks, "llama-imatrix needs 2 chunks or more",
             "Use null (all of the calibration text) or 2 and more.")
    if own_imatrix(quant.imatrix) and quant.calibration:
        fail("quant.calibration", list(quant.calibration), "a file of your own (quant.imatrix) is used as it is, "
             "so calibration text would change nothing", "Set quant.imatrix=auto to compute one, or drop "
             "quant.calibration.")
    for pattern, name in (quant.tensor_types or {}).items():
        try:
            re.compile(str(pattern))
        except re.error as err:
            fail(f"quant.tensor_types.{pattern}", name, f"not a regular expression ({err})",
                 "Write a part of the tensor names to match, e.g. attn_v or blk\\.[0-3]\\.ffn_down.")
        _tensor_type(f"quant.tensor_types.{pattern}", name, cfg, fail)
    for key in ("output_tensor_type", "token_embedding_type"):
        if quant[key] is not None:
            _tensor_type(f"quant.{key}", quant[key], cfg, fail)


def _needs_imatrix(key: str, quant_type: str, cfg, fail) -> None:
    if quant_type in QUANT_TYPES and QUANT_TYPES[quant_type].imatrix == IMATRIX_REQUIRED and \
            not uses_imatrix(quant_type, cfg.quant.imatrix):
        fail(key, quant_type, "this type is built only with an importance matrix (llama.cpp's i-quants and "
             "q2_k lose too much without one) and quant.imatrix is none",
             "Set quant.imatrix=auto (computed from your training samples) or quant.imatrix=<your file>.")


def _tensor_type(key: str, name, cfg, fail) -> None:
    lower = str(name).lower()
    if lower not in TENSOR_TYPES:
        close = difflib.get_close_matches(lower, TENSOR_TYPES, n=1)
        hint = (f"{name} is a file type; its tensors' type is {lower.rsplit('_', 1)[0]}. " if lower in QUANT_TYPES
                and lower.rsplit("_", 1)[0] in TENSOR_TYPES else f"Did you mean '{close[0]}'? " if close else "")
        fail(key, name, "not a ggml tensor type", f"{hint}Tensor types: {', '.join(TENSOR_TYPES)}.")
    if lower in TENSOR_TYPES_NEEDING_IMATRIX and cfg.quant.imatrix == IMATRIX_OFF:
        fail(key, name, "llama.cpp quantizes to this type only with an importance matrix, and quant.imatrix is none",
             "Set quant.imatrix=auto, or choose another type.")


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
    _check_quant(cfg, fail)
    if cfg.quant.split_max_size is not None and not is_size(cfg.quant.split_max_size):
        fail("quant.split_max_size", cfg.quant.split_max_size, "not a size", "Write it as llama.cpp does: 500M or 2G.")
    if cfg.model.chat_format is not None:
        one_of("model.chat_format", cfg.model.chat_format, list(FAMILIES))
    if cfg.prompt.template is not None:
        one_of("prompt.template", cfg.prompt.template, builtin())
    if not cfg.model.path and not cfg.model.hub_id:
        fail("model.path", None, "the model has neither a local path nor a hub id",
             f"Set model.path to {MODEL_PATHS}, or model.hub_id to a Hugging Face id.")
    steps = training_steps(cfg)
    for prefix, step in steps:
        _check_training(step, prefix, fail, one_of)
    if cfg.train.stage in {prefix.split(".")[1] for prefix, _ in steps if prefix}:
        fail("train.stage", cfg.train.stage, "a stage of the pipeline has this name too",
             "Name the pipeline's stages apart from the last one's train.stage (pipeline.sft, pipeline.pt, ...).")
    if cfg.cache.url is not None:
        _check_cache(cfg.cache, fail)
    one_of("launcher.name", cfg.launcher.name, list(LAUNCHERS))
    for stage, given in (cfg.launcher.stages or {}).items():
        for name in given or {}:
            if name not in RESOURCES:
                close = difflib.get_close_matches(str(name), RESOURCES, n=1)
                fail(f"launcher.stages.{stage}.{name}", given[name], "not a job resource",
                     f"{f'Did you mean {close[0]!r}? ' if close else ''}Resources: {', '.join(RESOURCES)}.")
    if cfg.launcher.poll_s <= 0:
        fail("launcher.poll_s", cfg.launcher.poll_s, "must be a positive number of seconds", "Use e.g. 10.")
    if cfg.jobs.train_at_once < 1:
        fail("jobs.train_at_once", cfg.jobs.train_at_once, "must be at least 1", "Use 1 unless you have spare GPUs.")
    if cfg.eval.enabled:
        for index, quant in enumerate(cfg.eval.quants):
            one_of(f"eval.quants[{index}]", quant, list(QUANT_TYPES))
            _needs_imatrix(f"eval.quants[{index}]", quant, cfg, fail)
        if cfg.eval.kld_tokens < 0:
            fail("eval.kld_tokens", cfg.eval.kld_tokens, "must be 0 or more", f"Use e.g. {KLD_TOKENS}.")
        if cfg.dataset.holdout == 0:
            fail("dataset.holdout", 0, "eval needs held-out rows that training never sees",
                 "Set dataset.holdout=0.1 (or a row count), or build without eval: eval.enabled=false.")
        for name in ("max_rows", "max_new_tokens", "n_ctx"):
            if cfg.eval[name] <= 0:
                fail(f"eval.{name}", cfg.eval[name], "must be positive", "Use 1 or more.")
    if cfg.target.vllm is not None:
        for index, scheme in enumerate(cfg.target.vllm.quants):
            one_of(f"target.vllm.quants[{index}]", scheme, list(SCHEMES))
        one_of("target.vllm.serve", cfg.target.vllm.serve, [MERGED, *SCHEMES])
        if cfg.target.vllm.tool_call_parser is not None:
            one_of("target.vllm.tool_call_parser", cfg.target.vllm.tool_call_parser, list(VLLM_TOOL_PARSERS))
    if cfg.smoke.max_tokens <= 0:
        fail("smoke.max_tokens", cfg.smoke.max_tokens, "must be positive", "Use e.g. 96.")
    for key, allowed, rule, fix in RANGES:
        for prefix in [""] + [p for p, _ in steps if p] if key.startswith(STEP_GROUPS) else [""]:
            value = OmegaConf.select(cfg, prefix + key)
            if value is not None and not allowed(value):
                fail(prefix + key, value, rule, fix)
    _check_modelfile_text(cfg, fail)
    if root is not None:
        _check_templates(cfg, root)


STEP_GROUPS = ("dataset.", "lora.", "train.")   # what each training stage has of its own


def training_steps(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(key prefix, the node holding dataset, lora and train) for each training stage: the
    pipeline's, in order, then the last one ("": the top-level groups)."""
    return [(f"pipeline.{name}.", step) for name, step in (cfg.pipeline or {}).items()] + [("", cfg)]


def _check_training(step, prefix: str, fail, one_of) -> None:
    """The dataset, LoRA and training settings of one training stage (keys under `prefix`)."""
    if prefix and not STEP_NAME.match(prefix.split(".", 1)[1][:-1]):
        fail(prefix.rstrip("."), "...", "not a stage name",
             "Name pipeline stages with up to 40 letters, digits, '_' or '-', e.g. pipeline.sft.")
    one_of(f"{prefix}train.stage", step.train.stage, list(METHODS))
    method = METHODS[step.train.stage]
    one_of(f"{prefix}train.pref_loss", step.train.pref_loss, list(DPO_LOSSES))
    if step.train.pref_loss != DPO_LOSSES[0] and method.name != "dpo":
        fail(f"{prefix}train.pref_loss", step.train.pref_loss, f"a loss of train.stage=dpo; this stage is "
             f"{method.name}", f"Use train.stage=dpo with it, or leave train.pref_loss at {DPO_LOSSES[0]}.")
    if step.train.dpo_label_smoothing and (method.name != "dpo" or step.train.pref_loss != "sigmoid"):
        fail(f"{prefix}train.dpo_label_smoothing", step.train.dpo_label_smoothing,
             "label smoothing is robust DPO's: train.stage=dpo with pref_loss sigmoid", "Set it to 0.")
    if not 0.0 <= step.train.dpo_label_smoothing <= 0.5:
        fail(f"{prefix}train.dpo_label_smoothing", step.train.dpo_label_smoothing, "must be in [0, 0.5]",
             "0.1 is a usual value for noisy preferences.")
    if step.train.pref_beta <= 0:
        fail(f"{prefix}train.pref_beta", step.train.pref_beta, "must be positive", "0.1 is usual for DPO.")
    if step.train.pref_ftx < 0:
        fail(f"{prefix}train.pref_ftx", step.train.pref_ftx, "the weight of the SFT loss added on the chosen answers "
             "cannot be negative", "Use 0 (none, the default) or a positive weight such as 0.1.")
    if step.train.simpo_gamma < 0:
        fail(f"{prefix}train.simpo_gamma", step.train.simpo_gamma, "SimPO's target reward margin cannot be negative",
             "0.5 to 1.5 is usual (default 0.5).")
    for name in ("kto_chosen_weight", "kto_rejected_weight"):
        if step.train[name] <= 0:
            fail(f"{prefix}train.{name}", step.train[name], "a weight of KTO's loss must be positive",
                 "Use 1.0 (the default), or weigh the rarer kind of answer up, e.g. 1.33.")
    for name in sorted(set(step.train.extra or {}) & SET_BY_LLMBUILD.keys()):
        setting = SET_BY_LLMBUILD[name]
        fail(f"{prefix}train.extra.{name}", step.train.extra[name], "an argument llmbuild writes into "
             "llamafactory.yaml itself; from train.extra it would replace llmbuild's value, and the adapter would "
             "differ from the config its key and report show",
             f"Set {setting} instead." if setting else "llmbuild sets it the same way for every build: remove it.")
    fmt = getattr(step.dataset.format, "value", step.dataset.format)
    if (fmt == "text") != (method.data == TEXT):
        wanted = "dataset.format=text" if method.data == TEXT else "dataset.format openai, sharegpt or alpaca"
        fail(f"{prefix}dataset.format", fmt, f"train.stage={method.name} ({method.what}) learns from "
             f"{DATA_FIELDS[method.data]}", f"Use {wanted}, or another train.stage.")
    if step.lora.r <= 0:
        fail(f"{prefix}lora.r", step.lora.r, "the LoRA rank must be positive", "Typical values: 8, 16, 32, 64.")
    if step.lora.alpha is not None and step.lora.alpha <= 0:
        fail(f"{prefix}lora.alpha", step.lora.alpha, "must be positive",
             "The usual choice, and the default, is alpha = 2 x r.")
    if not 0.0 <= step.lora.dropout < 1.0:
        fail(f"{prefix}lora.dropout", step.lora.dropout, "must be in [0, 1)", "0.0 to 0.1 is usual.")
    if step.lora.quantization_bit not in (None, 4, 8):
        fail(f"{prefix}lora.quantization_bit", step.lora.quantization_bit, "QLoRA loads the base in 4 or 8 bits",
             "Use 4, 8 or null.")
    if not step.lora.target:
        fail(f"{prefix}lora.target", list(step.lora.target), "no modules to adapt",
             "Use [all] or names like [q_proj, v_proj].")
    broken = all_not_alone(list(step.lora.target))
    if broken:
        fail(f"{prefix}lora.target", list(step.lora.target), *broken)
    if step.train.bf16 and step.train.fp16:
        fail(f"{prefix}train.fp16", True, "bf16 and fp16 are both on",
             "Pick one: bf16 on Ampere or newer GPUs, fp16 on older ones.")
    if step.train.learning_rate <= 0:
        fail(f"{prefix}train.learning_rate", step.train.learning_rate, "must be positive",
             "LoRA SFT usually uses 1e-5 to 1e-3.")
    if step.train.max_steps <= 0 and step.train.num_train_epochs <= 0:
        fail(f"{prefix}train.num_train_epochs", step.train.num_train_epochs, "nothing to train",
             "Set train.num_train_epochs > 0 or train.max_steps > 0.")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "cutoff_len"):
        if step.train[name] <= 0:
            fail(f"{prefix}train.{name}", step.train[name], "must be positive", "Use 1 or more.")
    if step.train.auto_batch and step.train.gpu_memory_gib is None:
        fail(f"{prefix}train.auto_batch", True, "chooses the batch from the GPU's memory, and "
             f"{prefix}train.gpu_memory_gib is not set", "Set train.gpu_memory_gib (e.g. 79.6 for an H100 80GB).")
    if not 0.0 <= step.train.gpu_memory_headroom < 1.0:
        fail(f"{prefix}train.gpu_memory_headroom", step.train.gpu_memory_headroom, "must be in [0, 1)",
             "0.1 leaves a tenth of the GPU to the allocator's cache.")
    if step.train.neat_packing and method.name != "sft":
        fail(f"{prefix}train.neat_packing", True, f"LLaMA-Factory packs this way for sft only; this stage is "
             f"{method.name}", "Set train.neat_packing=false.")
    if step.train.liger_kernel and "lm_head" in step.lora.target:
        fail(f"{prefix}train.liger_kernel", True, "Liger's fused loss multiplies by lm_head's base weight and "
             "would skip the adapter that lora.target puts on lm_head", "Take lm_head out of lora.target, or "
             "set train.liger_kernel=false.")
    one_of(f"{prefix}train.compile", step.train.compile, list(COMPILE_MODES))
    one_of(f"{prefix}train.compile_rounding", step.train.compile_rounding, list(ROUNDINGS))
    if step.train.compile == NONE and step.train.compile_rounding != EAGER:
        fail(f"{prefix}train.compile_rounding", step.train.compile_rounding, "rounding of compiled code, and "
             f"{prefix}train.compile is none: it would change the training's key and retrain for nothing",
             f"Set train.compile=layers or model with it, or leave it at {EAGER}.")
    if step.train.liger_kernel and step.train.compile == MODEL:
        fail(f"{prefix}train.compile", MODEL, "Liger's Triton kernels fail inside a compiled model (a Triton "
             "compilation error, then an illegal memory access), and train.liger_kernel is on", "Use "
             f"train.compile={LAYERS} (each decoder layer compiled, Liger's fused loss outside them: the fastest "
             "measured), or train.liger_kernel=false.")
    if not 0.0 <= step.train.warmup_ratio < 1.0:
        fail(f"{prefix}train.warmup_ratio", step.train.warmup_ratio, "must be in [0, 1)", "0.03 to 0.1 is usual.")
    _check_devices(step, prefix, fail, one_of)
    if step.dataset.holdout < 0 or (step.dataset.holdout >= 1 and step.dataset.holdout != int(step.dataset.holdout)):
        fail(f"{prefix}dataset.holdout", step.dataset.holdout, "a fraction below 1 or a whole number of rows",
             "Use e.g. 0.1 (10% of the rows) or 8 (eight rows); 0 holds out nothing.")


def _check_devices(step, prefix: str, fail, one_of) -> None:
    """train.devices and train.distributed (facts/distributed.py)."""
    devices = step.train.devices
    if devices != AUTO and (isinstance(devices, bool) or not isinstance(devices, int)):
        fail(f"{prefix}train.devices", devices, "not a number of GPUs",
             f"Use a whole number such as 2 (unquoted), or {AUTO} for every GPU visible when the build is planned.")
    if devices != AUTO and devices < 1:
        fail(f"{prefix}train.devices", devices, "must be at least 1",
             f"Use 1 (one GPU or the CPU), 2 or more, or {AUTO}.")
    one_of(f"{prefix}train.distributed", step.train.distributed, list(STRATEGIES))
    strategy = STRATEGIES[step.train.distributed]
    if devices != 1 and strategy.shards_weights and step.lora.quantization_bit == 8:
        fail(f"{prefix}lora.quantization_bit", 8, f"LLaMA-Factory splits a quantized base across GPUs "
             f"(train.distributed={strategy.name}) only in 4 bits",
             "Use lora.quantization_bit=4, or train.distributed=ddp or deepspeed-zero2.")


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


def _check_cache(cache, fail) -> None:
    url, options = str(cache.url), dict(cache.options or {})
    scheme = urlsplit(url).scheme
    if not scheme or len(scheme) == 1:   # a bare path, or a Windows drive letter
        fail("cache.url", url, "not a URL", "Write s3://bucket/prefix, or file:///path for a folder on a shared disk.")
    carried = credential_in_url(url, options)
    if carried:
        fail("cache.url" if "URL" in carried else "cache.options", MASK, f"holds a credential ({carried})",
             "Credentials come from the environment only: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or ~/.aws), "
             "and AWS_ENDPOINT_URL for an S3-compatible server.")


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
    ("eval.recommend_kld", _positive, "must be positive", f"{RECOMMEND_KLD} is the default."),
    ("target.llamacpp.port", _port, "not a TCP port", "Use 1 to 65535, e.g. 8080."),
    ("target.llamacpp.n_ctx", _positive, "must be a positive number of tokens", "Use e.g. 4096."),
    ("target.llamacpp.n_gpu_layers", lambda v: v >= -1, "must be -1 (all) or more", "0 runs on the CPU."),
    ("target.vllm.port", _port, "not a TCP port", "Use 1 to 65535, e.g. 8000."),
    ("target.vllm.max_model_len", _positive, "must be a positive number of tokens (or null)", "Use e.g. 8192."),
    ("target.vllm.calibration_samples", _positive, "must be a positive number of training samples",
     "Use e.g. 64 (GPTQ and AWQ are usually calibrated on 128 to 512)."),
    ("target.vllm.calibration_max_len", _positive, "must be a positive number of tokens", "Use e.g. 512."),
)
