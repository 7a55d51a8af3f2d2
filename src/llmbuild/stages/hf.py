"""hf: the merged model as a folder ready for the Hugging Face hub, with a model card that
records the recipe, the stage keys and the training metrics."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from ..adapters import llamafactory
from ..chat_families import FAMILIES
from ..config.validate import chat_family
from ..files import link_or_copy
from ..plan.keys import tool_version
from ..store import read_manifest
from ..templating import render_file
from .context import StageContext

SPDX = re.compile(r"^[A-Za-z0-9.+-]+$")  # an SPDX-like id (apache-2.0, mit, llama3); else the text is a name


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    folder = ctx.out / "model"
    folder.mkdir()
    for item in (ctx.inputs["merge"] / "merged").iterdir():
        link_or_copy(item, folder / item.name)
    family = FAMILIES[chat_family(cfg)]
    manifest = read_manifest(ctx.inputs["train"])
    card = render_file(
        ctx.root, "hf/README.md.j2",
        title=cfg.target.hf.repo_id or f"{cfg.model.name} (llmbuild fine-tune)",
        model=cfg.model.name, base_model=cfg.model.hub_id, family=family.name,
        eos=[e for e in (family.eos,) if e] or ["the tokenizer's EOS"],
        license_id=cfg.model.license.lower() if cfg.model.license and SPDX.match(cfg.model.license) else None,
        license=cfg.model.license, dataset=cfg.dataset.name,
        tags=["llmbuild", "lora", "sft", *cfg.target.hf.tags],
        lora=OmegaConf.to_container(cfg.lora), train=OmegaConf.to_container(cfg.train),
        metrics=_metrics(ctx.inputs["train"]) + [("training time", f"{manifest['seconds']:.0f} s")],
        keys=[("train", manifest["key"]), ("merge", ctx.inputs["merge"].name), ("hf", ctx.key)],
        tools=[(name, tool_version(name)) for name in ("llamafactory", "transformers", "peft", "torch")],
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    ctx.say(f"HF folder with model card: {ctx.out.parent.name}/{ctx.key}/model")


def _metrics(train: Path) -> list[tuple[str, str]]:
    adapter = train / "adapter"
    out = [(f"train {k.removeprefix('train_').replace('_', ' ')}", str(round(v, 4)) if isinstance(v, float) else str(v))
           for k, v in llamafactory.train_results(adapter).items()
           if k in ("train_loss", "train_runtime", "train_samples_per_second", "epoch")]
    losses = llamafactory.logged_losses(adapter)
    if losses:
        out.append(("final logged loss", f"{losses[-1]:.4f}"))
    return out
