"""The train stage's checks before training: what LLaMA-Factory would find only after loading the
model, or never (it truncates a long system prompt silently), and what the stages after training
could not build (the smoke test's and eval's context, a vLLM checkpoint the layers cannot take),
found in seconds with the names to use.

They read the train stage's config view and the model it trains on. The command line runs them
while it plans a build, for each train stage not built yet whose model is on disk (cli/tasks.py,
`check_before_building`), so a build they refuse stops before any stage runs; the train stage runs
them first thing too, for a model built during the same run (a GGUF imported, a hub download).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from omegaconf import DictConfig

from ..adapters import hf_tokenizer, hf_weights, llamafactory_launch
from ..chat.setup import family_of
from ..errors import StageError
from ..facts.chat_families import builtin
from ..facts.distributed import STRATEGIES
from ..facts.train_methods import TEXT, method
from ..facts.vllm_schemes import IGNORED_LAYERS, MERGED, SCHEMES, built, fit_problem
from ..files.devices import visible_gpus

ROOM = 32   # tokens a sample needs beside the system prompt, at the very least


def check_before_training(cfg: DictConfig, base: Path) -> None:
    """Every check, for the train stage's config view `cfg` and the HF folder `base` it trains on;
    a StageError (or ToolError) naming the key and the fix."""
    check_devices(cfg)
    if cfg.train.liger_kernel and visible_gpus() == 0:
        raise StageError("train.liger_kernel is on and this machine shows no GPU (/dev/nvidia*, "
                         "CUDA_VISIBLE_DEVICES): Liger's kernels are Triton's, which runs on CUDA GPUs only. Set "
                         "train.liger_kernel=false (train=gpu-bf16 on a CPU: train.liger_kernel=false "
                         "train.bf16=false), or build on a GPU machine.")
    _check_lora_targets(cfg, base)
    config = _config(base)
    _check_vllm_schemes(cfg, base, config)
    if method(cfg.train.stage).data == TEXT:
        return   # raw text: no system prompt, no chat
    _check_chat_format(cfg, base, config.get("model_type"))
    _check_contexts(cfg, base)


def _check_chat_format(cfg: DictConfig, base: Path, model_type: str | None) -> None:
    """A SentencePiece tokenizer comes with its tokenizer.model; the prompt format is decided (the model's
    template, model.chat_format or prompt.template), the model's own template parses, and the tokenizer
    has the token the format ends a turn with."""
    tokenizer = hf_tokenizer.load_tokenizer(base)
    kind = hf_tokenizer.sentencepiece_kind(tokenizer)
    if kind and not (base / hf_tokenizer.SENTENCEPIECE_MODEL).is_file():
        raise StageError(f"{base} has a SentencePiece tokenizer ({kind} in tokenizer.json) but no "
                         f"{hf_tokenizer.SENTENCEPIECE_MODEL}: llama.cpp's converter reads the pieces' scores and "
                         f"types from that file, so the trained model could not become a GGUF that tokenizes as "
                         f"training did. Put the model's {hf_tokenizer.SENTENCEPIECE_MODEL} (published with it) into "
                         f"the folder.")
    own = hf_tokenizer.own_chat_template(tokenizer)
    if own and not cfg.prompt.template:
        error = hf_tokenizer.template_syntax_error(tokenizer, own)
        if error is not None:
            raise StageError(f"the model's chat template ({hf_tokenizer.own_chat_template_file(base)} in {base}) "
                             f"line {error.lineno}: {error.message}. Fix the template there, or set "
                             f"prompt.template to one of {', '.join(builtin())} to train with llmbuild's own.")
    family = family_of(own, cfg.model.chat_format, cfg.prompt.template, model_type=model_type)
    if family is not None and family.eos and not hf_tokenizer.has_token(tokenizer, family.eos):
        key = "prompt.template" if cfg.prompt.template else "model.chat_format" if not own else \
            "the model's own chat template"
        raise StageError(f"{key}: the {family.name} format ends each turn with {family.eos!r}, which is not a "
                         f"token of this model's tokenizer, so generation would never stop there. Pick a format "
                         f"whose tokens the model has (prompt.template: {', '.join(builtin())}).")


def check_devices(cfg: DictConfig) -> None:
    """Several GPUs: DeepSpeed installed if the strategy needs it, and as many GPUs visible as the
    key says (LLaMA-Factory would start a process per GPU asked for and fail in each)."""
    devices = cfg.train_devices
    if devices == 1:
        return
    llamafactory_launch.require_deepspeed(STRATEGIES[cfg.train.distributed])
    visible = visible_gpus()
    if visible < devices:
        asked = f"counted {devices} GPUs when the build was planned" if cfg.train.devices != devices else \
            f"asks for {devices} GPUs"
        raise StageError(f"train.devices={cfg.train.devices} {asked}, and this machine shows {visible} "
                         f"(/dev/nvidia*, CUDA_VISIBLE_DEVICES). Use train.devices={max(visible, 1)}, or build "
                         f"on a machine with {devices} GPUs.")


def _check_lora_targets(cfg: DictConfig, base: Path) -> None:
    """lora.target names modules the model has (LLaMA-Factory would fail after loading it)."""
    targets = [t for t in cfg.lora.target if t != "all"]
    modules = hf_tokenizer.weight_module_names(base)
    unknown = [t for t in targets if t not in modules]
    if modules and unknown:
        close = [difflib.get_close_matches(t, sorted(modules), n=1) for t in unknown]
        hint = "; did you mean " + ", ".join(c[0] for c in close if c) + "?" if any(close) else ""
        raise StageError(f"lora.target = {list(cfg.lora.target)}: this model has no module named "
                         f"{', '.join(unknown)}{hint} Its weight modules: {', '.join(sorted(modules))} "
                         f"(or [all] for every linear layer).")


def _check_vllm_schemes(cfg: DictConfig, base: Path, config: dict) -> None:
    """A vLLM checkpoint the model's layers cannot take (target.vllm.quants), or a context beyond the
    model's (config.json), fails now, not after training."""
    settings = cfg.target.vllm
    context = config.get("max_position_embeddings")
    if settings and settings.max_model_len and isinstance(context, int) and settings.max_model_len > context:
        raise StageError(f"target.vllm.max_model_len = {settings.max_model_len} is beyond the model's context "
                         f"({context} tokens, config.json max_position_embeddings): vLLM refuses to start with it. "
                         f"Set it to {context} or less (or leave it unset: vLLM takes the model's own).")
    names = built(settings.quants or [], settings.serve or MERGED) if settings else []
    if not names:
        return
    inputs = hf_weights.linear_inputs(base, IGNORED_LAYERS)
    for name in names:
        problem = fit_problem(SCHEMES[name], inputs)
        if problem:
            raise StageError(problem)


def _config(model: Path) -> dict:
    """The model's config.json ({} where it cannot be read: the checks that need it are skipped)."""
    try:
        found = json.loads((model / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _check_contexts(cfg: DictConfig, base: Path) -> None:
    """The system prompt leaves room for an answer in training (train.cutoff_len), the smoke test
    (smoke.n_ctx) and eval (eval.n_ctx)."""
    system = cfg.prompt.system or ""
    if cfg.train.cutoff_len <= 2 * ROOM:   # no room for a conversation, whatever the system prompt
        raise StageError(f"train.cutoff_len = {cfg.train.cutoff_len} leaves no room for a conversation: LLaMA-Factory "
                         f"cuts every sample at cutoff_len tokens, chat format, system prompt, question and answer "
                         f"together. Raise train.cutoff_len (512 or more is usual; above your longest conversation).")
    if too_long(base, system, cfg.train.cutoff_len - ROOM):
        tokens = hf_tokenizer.count_tokens(base, system)
        raise StageError(f"prompt.system is {tokens} tokens and train.cutoff_len is {cfg.train.cutoff_len}: no "
                         f"sample would keep its answer (LLaMA-Factory cuts samples at cutoff_len). Shorten "
                         f"prompt.system or raise train.cutoff_len above {tokens} plus your longest conversation.")
    question = max(list(cfg.smoke.questions) or [""], key=len)
    if too_long(base, system + question, cfg.smoke.n_ctx - cfg.smoke.max_tokens - ROOM):
        tokens = hf_tokenizer.count_tokens(base, system + question)
        raise StageError(f"prompt.system and the longest smoke question are {tokens} tokens, and with "
                         f"smoke.max_tokens={cfg.smoke.max_tokens} they do not fit smoke.n_ctx={cfg.smoke.n_ctx}: the "
                         f"smoke test after training would fail. Raise smoke.n_ctx above "
                         f"{tokens + cfg.smoke.max_tokens + ROOM} or shorten prompt.system.")
    if cfg.eval.enabled and too_long(base, system, cfg.eval.n_ctx - cfg.eval.max_new_tokens - ROOM):
        tokens = hf_tokenizer.count_tokens(base, system)
        raise StageError(f"prompt.system is {tokens} tokens, and with eval.max_new_tokens={cfg.eval.max_new_tokens} "
                         f"it leaves no room in eval.n_ctx={cfg.eval.n_ctx}: eval would cut every held-out prompt's "
                         f"system message. Raise eval.n_ctx above {tokens + cfg.eval.max_new_tokens + ROOM} plus your "
                         f"longest conversation, or shorten prompt.system.")


def too_long(base: Path, text: str, limit: int) -> bool:
    """Whether `text` has at least `limit` tokens: tokenized only when its bytes could be that many
    (a token holds at least one byte), so a short prompt costs nothing."""
    return len(text.encode("utf-8")) >= limit and hf_tokenizer.count_tokens(base, text) >= limit
