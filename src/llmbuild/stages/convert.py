"""convert: merged HF folder -> f16/bf16/f32 GGUF with llama.cpp's convert_hf_to_gguf.py, named
model.name (general.name; for a tokenizer that drops the whitespace after its special tokens, a name
that makes llama.cpp do the same: llama_cpp.gguf_name)."""

from __future__ import annotations

from ..adapters import hf_tokenizer, llama_cpp
from ..adapters.llama_cpp_vocab import metadata_and_token_ids, read_metadata
from ..errors import StageError, ToolError
from ..facts import layout
from . import ggufs
from .context import StageContext

# ordinary text every tokenizer must take: a line break, accents, CJK and an emoji (characters outside a
# vocabulary go to its byte tokens, which a SentencePiece vocabulary converted from byte-level BPE lacks)
PROBE = "Hello,\nthis is café 中文 🙂"


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
    meta = _metadata_tokenizing(target)
    expected = (ctx.inputs["merge"] / layout.CHAT_TEMPLATE).read_text(encoding="utf-8")
    if meta.get("tokenizer.chat_template") != expected:
        raise StageError("the GGUF's tokenizer.chat_template differs from the merged model's chat template; "
                         f"the converter did not carry it over (see {layout.CONVERT_LOG})")
    ctx.say(f"{target.name}: pre-tokenizer '{meta.get('tokenizer.ggml.pre')}', chat template embedded"
            + (f"; named {name!r} so that llama.cpp drops the whitespace after special tokens as the tokenizer "
               f"does" if name != ctx.cfg.model.name else ""))


def _metadata_tokenizing(gguf):
    """The GGUF's metadata, from the same llama.cpp load that tokenizes ordinary text with its vocabulary
    (where the converter wrote a vocabulary of the wrong kind, llama.cpp's tokenizer aborts; the load
    runs in a copy of this process, and only then is the vocabulary read again, for the message)."""
    try:
        return metadata_and_token_ids(gguf, [PROBE])[0]
    except ToolError as err:
        meta = read_metadata(gguf)
        raise StageError(
            f"llama.cpp cannot tokenize ordinary text with {gguf.name}'s vocabulary (tokenizer.ggml.model "
            f"'{meta.get('tokenizer.ggml.model')}', pre-tokenizer '{meta.get('tokenizer.ggml.pre')}'): the "
            f"converter did not recognise the merged model's tokenizer. Compare the base model's tokenizer.json "
            f"and tokenizer_config.json with its publisher's ({err})") from None
