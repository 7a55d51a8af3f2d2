"""split: the quantized GGUF as llama.cpp split files (`<name>-00001-of-0000N.gguf`, with split.*
metadata) of at most quant.split_max_size each, for hosts with a per-file limit. llama.cpp loads
them from the first file; `ollama create` takes the folder (FROM .) in releases that merge splits."""

from __future__ import annotations

from ..adapters import gguf_split
from ..facts.gguf_files import parse_size
from . import ggufs
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    source = ggufs.gguf(ctx.inputs["quantize"])
    shards = gguf_split.split(source, ctx.out, parse_size(cfg.quant.split_max_size))
    ctx.say(f"{source.name} -> {len(shards)} file(s) of at most {cfg.quant.split_max_size}: "
            + ", ".join(f"{p.name} ({p.stat().st_size / 2**20:.1f} MiB)" for p in shards))
