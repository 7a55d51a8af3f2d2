"""train: LoRA fine-tuning with `llamafactory-cli train` on a YAML written into the artifact."""

from __future__ import annotations

from ..adapters import llamafactory
from ..errors import StageError
from .context import StageContext

ADAPTER = "adapter"


def run(ctx: StageContext) -> None:
    args = llamafactory.train_args(
        ctx.cfg,
        base=ctx.relative(ctx.inputs["base"]),
        dataset_dir=ctx.relative(ctx.inputs["data"] / "dataset"),
        output_dir=ADAPTER,
    )
    llamafactory.write_yaml(args, ctx.out, f"LLaMA-Factory LoRA SFT, written by llmbuild ({ctx.key}). "
                                           f"Run by hand: cd {ctx.out.parent.name}/{ctx.key} && llamafactory-cli train {llamafactory.YAML_NAME}")
    llamafactory.run("train", ctx.out, offline=bool(ctx.cfg.model.path))
    adapter = ctx.out / ADAPTER
    if not (adapter / "adapter_model.safetensors").is_file():
        raise StageError(f"llamafactory-cli train finished without writing {ADAPTER}/adapter_model.safetensors; see train.log")
    losses = llamafactory.logged_losses(adapter)
    if losses:
        ctx.say(f"train loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} logged steps")
