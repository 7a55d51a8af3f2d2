"""hf: the merged model as a folder ready for the Hugging Face hub, with a model card that
records the recipe, the stage keys and the training metrics."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from ..adapters import llamafactory
from ..facts import layout
from ..files.links import link_or_copy
from ..store.artifacts import read_manifest
from . import chat
from .context import StageContext

SPDX = re.compile(r"^[A-Za-z0-9.+-]+$")  # an SPDX-like id (apache-2.0, mit, llama3); else the text is a name
CARD_TOOLS = ("llamafactory", "transformers", "peft", "torch")  # as the train stage recorded them


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    folder = ctx.out / layout.HF_MODEL
    folder.mkdir()
    for item in (ctx.inputs["merge"] / layout.MERGED).iterdir():
        link_or_copy(item, folder / item.name)
    setup = chat.recorded(ctx.inputs["merge"])
    family = setup.chat_family
    manifest = read_manifest(ctx.inputs["train"])
    card = ctx.templates.render(
        layout.HF_CARD_TEMPLATE,
        title=cfg.target.hf.repo_id or f"{cfg.model.name} (llmbuild fine-tune)",
        model=cfg.model.name, base_model=cfg.model.hub_id, family=setup.family or "its own",
        eos=[e for e in (family.eos if family else None,) if e] or ["the tokenizer's EOS"],
        license_id=cfg.model.license.lower() if cfg.model.license and SPDX.match(cfg.model.license) else None,
        license=cfg.model.license, dataset=cfg.dataset.name,
        tags=["llmbuild", "lora", "sft", *cfg.target.hf.tags],
        lora=OmegaConf.to_container(cfg.lora), train=OmegaConf.to_container(cfg.train),
        metrics=_metrics(ctx.inputs["train"]) + [("training time", f"{manifest['seconds']:.0f} s")],
        keys=[("train", manifest["key"]), ("merge", ctx.inputs["merge"].name), ("hf", ctx.key)],
        tools=[(name, manifest["tools"].get(name, "?")) for name in CARD_TOOLS],
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    ctx.say(f"HF folder with model card: {ctx.out.parent.name}/{ctx.key}/{layout.HF_MODEL}")


def _metrics(train: Path) -> list[tuple[str, str]]:
    adapter = train / layout.ADAPTER
    out = [(f"train {k.removeprefix('train_').replace('_', ' ')}", str(round(v, 4)) if isinstance(v, float) else str(v))
           for k, v in llamafactory.train_results(adapter).items()
           if k in ("train_loss", "train_runtime", "train_samples_per_second", "epoch")]
    losses = llamafactory.logged_losses(adapter)
    if losses:
        out.append(("final logged loss", f"{losses[-1]:.4f}"))
    return out
