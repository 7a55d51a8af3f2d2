"""quantize: the converted GGUF -> quant.type with llama.cpp's quantizer (llama_model_quantize)."""

from __future__ import annotations

from ..adapters import llama_cpp
from ..naming import gguf_file
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    source = ctx.inputs["convert"] / gguf_file(cfg.model.name, cfg.quant.convert_type)
    target = ctx.out / gguf_file(cfg.model.name, cfg.quant.type)
    llama_cpp.quantize(source, target, cfg.quant.type, cfg.quant.nthread)
    ratio = target.stat().st_size / source.stat().st_size
    ctx.say(f"{target.name}: {target.stat().st_size / 2**20:.1f} MiB ({ratio:.0%} of {cfg.quant.convert_type})")
