"""quantize: the converted GGUF -> quant.type with llama.cpp's quantizer (llama_model_quantize).
quantize.json records the tensor types written, and how many tensors fell back from the requested
type because their rows do not fit its block (eval and the report show it)."""

from __future__ import annotations

import json

from ..adapters import llama_cpp
from ..naming import gguf_file
from .context import StageContext

RECORD = "quantize.json"


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    source = ctx.inputs["convert"] / gguf_file(cfg.model.name, cfg.quant.convert_type)
    target = ctx.out / gguf_file(cfg.model.name, cfg.quant.type)
    written = llama_cpp.quantize(source, target, cfg.quant.type, cfg.quant.nthread, log=ctx.out / "quantize.log")
    record = {"type": cfg.quant.type, **written.to_json()}
    (ctx.out / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    ratio = target.stat().st_size / source.stat().st_size
    ctx.say(f"{target.name}: {target.stat().st_size / 2**20:.1f} MiB ({ratio:.0%} of {cfg.quant.convert_type})")
    if written.fallback:
        ctx.say(f"  {llama_cpp.fallback_text(record, ' quantized tensors')} fell back from {cfg.quant.type}: "
                f"their rows do not fit its block; see quantize.log")
