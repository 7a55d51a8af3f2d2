"""train: LoRA fine-tuning with `llamafactory-cli train` on a YAML written into the artifact."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..adapters import llamafactory
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


def run(ctx: StageContext) -> None:
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
