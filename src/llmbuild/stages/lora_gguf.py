"""lora_gguf: for `target.ollama.adapter`, the two files of an un-merged deployment: the LoRA
adapter as a GGUF (llama.cpp's convert_lora_to_gguf.py) and the base model as a GGUF at quant.type
(convert_hf_to_gguf.py, then llama-quantize, without an importance matrix: the base
model has no training samples of its own). The Modelfile then says FROM the base and ADAPTER the
LoRA, so one base can carry several adapters. Checked here: llama.cpp loads the base with the
adapter applied."""

from __future__ import annotations

from ..adapters import llama_cpp, llama_cpp_tools
from ..errors import StageError
from ..facts import layout
from . import ggufs
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    name = cfg.model.name
    adapter = ctx.out / layout.lora_adapter_gguf(name)
    llama_cpp.convert_lora(ctx.inputs["train"] / layout.ADAPTER, ctx.inputs["base"], adapter,
                           ctx.out / layout.LORA_CONVERT_LOG, ctx.verbose)
    converted = ctx.out / layout.lora_base_gguf(name, cfg.quant.convert_type)
    llama_cpp.convert(ctx.inputs["base"], converted, cfg.quant.convert_type, ctx.out / layout.LORA_BASE_CONVERT_LOG,
                      ctx.verbose)
    base = ctx.out / layout.lora_base_gguf(name, cfg.quant.type)
    if base != converted:
        llama_cpp_tools.quantize(converted, base, cfg.quant.type, nthread=cfg.quant.nthread,
                                 log=ctx.out / layout.LORA_BASE_QUANTIZE_LOG)
        converted.unlink()
    ggufs.record(ctx.record, gguf=base, lora=adapter)
    try:
        llama_cpp.check_adapter(base, adapter)
    except Exception as err:  # llama.cpp reports a mismatched adapter as a plain failure
        raise StageError(f"llama.cpp cannot apply {adapter.name} to {base.name}: {err}") from None
    ctx.say(f"{adapter.name} ({adapter.stat().st_size / 2**20:.1f} MiB) applies to {base.name} "
            f"({base.stat().st_size / 2**20:.1f} MiB) in llama.cpp")
