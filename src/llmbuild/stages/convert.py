"""convert: merged HF folder -> f16/bf16/f32 GGUF with llama.cpp's convert_hf_to_gguf.py."""

from __future__ import annotations

from ..adapters import llama_cpp
from ..errors import StageError
from ..gguf_meta import read_metadata
from ..naming import gguf_file
from .context import StageContext


def run(ctx: StageContext) -> None:
    outtype = ctx.cfg.quant.convert_type
    target = ctx.out / gguf_file(ctx.cfg.model.name, outtype)
    merged = ctx.inputs["merge"] / "merged"
    llama_cpp.convert(merged, target, outtype, ctx.out / "convert.log")
    meta = read_metadata(target)
    expected = (ctx.inputs["merge"] / "chat_template.jinja").read_text(encoding="utf-8")
    if meta.get("tokenizer.chat_template") != expected:
        raise StageError("the GGUF's tokenizer.chat_template differs from the merged model's chat template; "
                         "the converter did not carry it over (see convert.log)")
    ctx.say(f"{target.name}: pre-tokenizer '{meta.get('tokenizer.ggml.pre')}', chat template embedded")
