"""convert: merged HF folder -> f16/bf16/f32 GGUF with llama.cpp's convert_hf_to_gguf.py, named
model.name (general.name; for a tokenizer that drops the whitespace after its special tokens, a name
that makes llama.cpp do the same: llama_cpp.gguf_name)."""

from __future__ import annotations

from ..adapters import hf_tokenizer, llama_cpp
from ..adapters.llama_cpp_vocab import read_metadata
from ..errors import StageError
from ..facts import layout
from . import ggufs
from .context import StageContext


def run(ctx: StageContext) -> None:
    outtype = ctx.cfg.quant.convert_type
    target = layout.converted_gguf(ctx.out, ctx.cfg.model.name, outtype)
    merged = ctx.inputs["merge"] / layout.MERGED
    strips = hf_tokenizer.strips_after_special_tokens(hf_tokenizer.load_tokenizer(merged))
    name = llama_cpp.gguf_name(ctx.cfg.model.name, strips)
    progress = ctx.progress("converting")
    llama_cpp.convert(merged, target, outtype, ctx.out / layout.CONVERT_LOG, ctx.verbose,
                      llama_cpp.tensor_progress(progress.update), name=name)
    progress.close()
    ggufs.record(ctx.record, gguf=target)
    meta = read_metadata(target)
    expected = (ctx.inputs["merge"] / layout.CHAT_TEMPLATE).read_text(encoding="utf-8")
    if meta.get("tokenizer.chat_template") != expected:
        raise StageError("the GGUF's tokenizer.chat_template differs from the merged model's chat template; "
                         f"the converter did not carry it over (see {layout.CONVERT_LOG})")
    ctx.say(f"{target.name}: pre-tokenizer '{meta.get('tokenizer.ggml.pre')}', chat template embedded"
            + (f"; named {name!r} so that llama.cpp drops the whitespace after special tokens as the tokenizer "
               f"does" if name != ctx.cfg.model.name else ""))
