"""base: the base model as an HF folder, from a local folder, a GGUF file or a hub id."""

from __future__ import annotations

import os
from pathlib import Path

from ..adapters import gguf_import, gguf_split, hub
from ..errors import StageError
from ..files.model_path import GGUF, ModelPath, inspect_model_path
from .context import StageContext


def run(ctx: StageContext) -> None:
    model = ctx.cfg.model
    if model.path:
        source = inspect_model_path(ctx.files["model"])   # the rule the key checked when it was planned
        if source.problem:
            raise StageError(f"model.path = {model.path!r}: {source.problem}")
        if source.kind == GGUF:
            _import_gguf(ctx, source)
        else:
            _link_folder(source.path, ctx.out)
        return
    hub.download(model.hub_id, model.revision, ctx.out, token=ctx.credentials.get("HF_TOKEN"))
    # without network the hub hands back whatever the folder holds (nothing): never store that as a model
    problem = inspect_model_path(ctx.out).problem
    if problem:
        remedy = hub.OFFLINE_REMEDY.format(name=model.hub_id.split("/")[-1])
        lacks = problem.split("; ")[0].replace(str(ctx.out), "the downloaded folder")
        raise StageError(f"model.hub_id = {model.hub_id!r}: the hub gave no usable model ({lacks}: no network, "
                         f"or the repository holds no HF model). {remedy}")

def _import_gguf(ctx: StageContext, source: ModelPath) -> None:
    name = source.path.name
    if source.split:  # llama.cpp reads every shard; the import needs one file
        ctx.say(f"{name} is split into {len(source.files)} files: merging with llama.cpp")
        single = ctx.out / ".merged.gguf"
        gguf_split.merge(source.files[0], single)
    else:
        single = source.path
    info = gguf_import.import_gguf(single, ctx.out)
    if source.split:
        single.unlink()
    ctx.say(f"{name}: weights through transformers, tokenizer rebuilt from the GGUF "
            f"({info['vocab_size']} tokens, pre-tokenizer '{info['pre_tokenizer']}')")


def _link_folder(source: Path, out: Path) -> None:
    """Reference a local HF folder without copying gigabytes; its files are part of the key."""
    for item in source.iterdir():
        if not item.name.startswith("."):
            os.symlink(item.resolve(), out / item.name)
