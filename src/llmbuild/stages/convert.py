"""convert: merged HF folder -> f16/bf16/f32 GGUF with llama.cpp's convert_hf_to_gguf.py."""

from __future__ import annotations

from ..adapters import llama_cpp
from ..adapters.llama_cpp_vocab import read_metadata
from ..errors import StageError
from ..facts import layout
from .context import StageContext


def run(ctx: StageContext) -> None:
    outtype = ctx.cfg.quant.convert_type
    target = layout.converted_gguf(ctx.out, ctx.cfg.model.name, outtype)
    progress = ctx.progress("converting")
    llama_cpp.convert(ctx.inputs["merge"] / layout.MERGED, target, outtype, ctx.out / "convert.log", ctx.verbose,
                      llama_cpp.tensor_progress(progress.update))
    progress.close()
    meta = read_metadata(target)
    expected = (ctx.inputs["merge"] / layout.CHAT_TEMPLATE).read_text(encoding="utf-8")
    if meta.get("tokenizer.chat_template") != expected:
        raise StageError("the GGUF's tokenizer.chat_template differs from the merged model's chat template; "
                         "the converter did not carry it over (see convert.log)")
    ctx.say(f"{target.name}: pre-tokenizer '{meta.get('tokenizer.ggml.pre')}', chat template embedded")
