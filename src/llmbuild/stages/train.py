"""train: LoRA fine-tuning with `llamafactory-cli train` on a YAML written into the artifact."""

from __future__ import annotations

import difflib
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..adapters import hf_tokenizer, llamafactory
from ..errors import StageError
from ..facts import layout
from ..facts.chat_families import FAMILIES
from .context import StageContext


def arguments(cfg: DictConfig, base: str, dataset_dir: str, output_dir: str) -> dict[str, Any]:
    """LLaMA-Factory's training arguments for this stage's config view (also `doit preview`'s)."""
    return llamafactory.train_args(
        base=base, dataset=cfg.dataset.name, dataset_dir=dataset_dir, output_dir=output_dir,
        template=FAMILIES[cfg.chat_format].llamafactory_template, default_system=cfg.prompt.system,
        trust_remote_code=cfg.model.trust_remote_code,
        lora=OmegaConf.to_container(cfg.lora, resolve=True), train=OmegaConf.to_container(cfg.train, resolve=True))


def check_before_training(ctx: StageContext) -> None:
    """What LLaMA-Factory would find only after loading the model, or never (it truncates a long
    system prompt silently): found in seconds, with the names to use."""
    cfg, base = ctx.cfg, ctx.inputs["base"]
    targets = [t for t in cfg.lora.target if t != "all"]
    modules = hf_tokenizer.weight_module_names(base)
    unknown = [t for t in targets if t not in modules]
    if modules and unknown:
        close = [difflib.get_close_matches(t, sorted(modules), n=1) for t in unknown]
        hint = "; did you mean " + ", ".join(c[0] for c in close if c) + "?" if any(close) else ""
        raise StageError(f"lora.target = {list(cfg.lora.target)}: this model has no module named "
                         f"{', '.join(unknown)}{hint} Its weight modules: {', '.join(sorted(modules))} "
                         f"(or [all] for every linear layer).")
    if cfg.prompt.system and len(cfg.prompt.system.encode("utf-8")) >= cfg.train.cutoff_len - ROOM:
        tokens = hf_tokenizer.count_tokens(base, cfg.prompt.system)  # a token holds at least one byte
        if tokens >= cfg.train.cutoff_len - ROOM:
            raise StageError(f"prompt.system is {tokens} tokens and train.cutoff_len is {cfg.train.cutoff_len}: no "
                             f"sample would keep its answer (LLaMA-Factory cuts samples at cutoff_len). Shorten "
                             f"prompt.system or raise train.cutoff_len above {tokens} plus your longest conversation.")


ROOM = 32   # tokens a sample needs beside the system prompt, at the very least


def run(ctx: StageContext) -> None:
    check_before_training(ctx)
    args = arguments(ctx.cfg, base=ctx.relative(ctx.inputs["base"]),
                     dataset_dir=ctx.relative(ctx.inputs["data"] / layout.DATASET_DIR), output_dir=layout.ADAPTER)
    llamafactory.write_yaml(args, ctx.out, f"LLaMA-Factory LoRA SFT, written by llmbuild ({ctx.key}). Run by hand: "
                                           f"cd {ctx.out.parent.name}/{ctx.key} && llamafactory-cli train "
                                           f"{layout.LLAMAFACTORY_YAML}")
    progress = ctx.progress("training")
    llamafactory.run("train", ctx.out, offline=bool(ctx.cfg.model.path), credentials=ctx.credentials,
                     verbose=ctx.verbose, on_line=llamafactory.train_progress(progress.update))
    progress.close()
    adapter = ctx.out / layout.ADAPTER
    if not (adapter / "adapter_model.safetensors").is_file():
        raise StageError(f"llamafactory-cli train finished without writing {layout.ADAPTER}/adapter_model.safetensors; "
                         f"see train.log")
    losses = llamafactory.logged_losses(adapter)
    results = llamafactory.train_results(adapter)
    if losses:
        ctx.say(f"train loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} logged steps")
    else:  # fewer steps than train.logging_steps: LLaMA-Factory's average is all there is
        ctx.say(f"train loss {results.get('train_loss', float('nan')):.4f} on average (no step logged: "
                f"train.logging_steps={ctx.cfg.train.logging_steps})")
