"""base: the base model as an HF folder, from a local folder, a GGUF file or a hub id."""

from __future__ import annotations

import os
from pathlib import Path

from ..adapters import gguf_import, gguf_split, hub
from ..errors import StageError
from ..facts.gguf_files import shards_of
from .context import StageContext


def run(ctx: StageContext) -> None:
    model = ctx.cfg.model
    if model.path:
        source = ctx.files["model"]
        if source.is_file() and source.suffix == ".gguf":
            _import_gguf(ctx, source)
            return
        if source.is_dir():
            _link_folder(source, ctx.out)
            return
        raise StageError(f"model.path = {model.path!r} is neither an HF model folder nor a .gguf file")
    hub.download(model.hub_id, model.revision, ctx.out, token=ctx.credentials.get("HF_TOKEN"))


def _import_gguf(ctx: StageContext, source: Path) -> None:
    shards = shards_of(source)
    if shards:  # llama.cpp reads every shard; the import needs one file
        ctx.say(f"{source.name} is split into {len(shards)} files: merging with llama.cpp")
        single = ctx.out / ".merged.gguf"
        gguf_split.merge(shards[0], single)
    else:
        single = source
    info = gguf_import.import_gguf(single, ctx.out)
    if shards:
        single.unlink()
    ctx.say(f"{source.name}: weights through transformers, tokenizer rebuilt from the GGUF "
            f"({info['vocab_size']} tokens, pre-tokenizer '{info['pre_tokenizer']}')")


def _link_folder(source: Path, out: Path) -> None:
    """Reference a local HF folder without copying gigabytes; its files are part of the key."""
    if not (source / "config.json").is_file():
        raise StageError(f"{source} has no config.json: model.path must be an HF model folder or a .gguf file")
    for item in source.iterdir():
        if not item.name.startswith("."):
            os.symlink(item.resolve(), out / item.name)
