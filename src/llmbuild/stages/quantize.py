"""quantize: the converted GGUF -> quant.type with llama.cpp's quantizer (llama_model_quantize).
quantize.json records the tensor types written, and how many tensors fell back from the requested
type because their rows do not fit its block (eval and the report show it)."""

from __future__ import annotations

import json

from ..adapters import llama_cpp
from ..facts import layout
from ..facts.quant_types import fallback_text
from . import ggufs
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    source = layout.converted_gguf(ctx.inputs["convert"], cfg.model.name, cfg.quant.convert_type)
    target = layout.quantized_gguf(ctx.out, cfg.model.name, cfg.quant.type)
    progress = ctx.progress(f"quantizing to {cfg.quant.type}")
    written = llama_cpp.quantize(source, target, cfg.quant.type, cfg.quant.nthread, log=ctx.out / layout.QUANTIZE_LOG,
                                 progress=progress.update)
    progress.close()
    ggufs.record(ctx.record, gguf=target)
    record = written.record_json(cfg.quant.type)
    (ctx.out / layout.QUANTIZE_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    ratio = target.stat().st_size / source.stat().st_size
    fell_back = (f"; {fallback_text(record, ' quantized tensors')} fell back from {cfg.quant.type}, their rows "
                 f"do not fit its block ({layout.QUANTIZE_LOG})" if written.fallback else "")
    ctx.say(f"{target.name}: {target.stat().st_size / 2**20:.1f} MiB ({ratio:.0%} of {cfg.quant.convert_type})"
            f"{fell_back}")
