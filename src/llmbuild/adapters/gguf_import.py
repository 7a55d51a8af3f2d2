"""GGUF -> HF model folder.

Weights: transformers' GGUF loader (it dequantizes). Tokenizer: rebuilt from the GGUF's own
tokens, merges, token types and special ids, because transformers' round trip loses the
pre-tokenizer and the special ids, and llama.cpp's converter then no longer recognises it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import StageError

# llama.cpp token types (llama.h: LLAMA_TOKEN_TYPE_*)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class GgufTokenizer:
    model: str                  # tokenizer.ggml.model: "gpt2" is byte-level BPE
    pre: str                    # tokenizer.ggml.pre: llama.cpp's pre-tokenizer name
    tokens: list[str]
    types: list[int]
    merges: list[str]
    special: dict[str, int]     # bos/eos/unk/pad -> id
    add_bos: bool
    add_eos: bool
    chat_template: str | None


def read_vocab(gguf_path: Path) -> GgufTokenizer:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(gguf_path))
    except (ValueError, OSError, IndexError) as err:   # gguf-py's words for a truncated or damaged file
        raise StageError(f"{gguf_path.name} cannot be read as a GGUF ({err}); the file is damaged or incomplete: "
                         f"download it again") from None

    def get(name: str, default=None):
        field = reader.fields.get(name)
        return field.contents() if field is not None else default

    special = {}
    for role in ("bos", "eos", "unknown", "padding"):
        value = get(f"tokenizer.ggml.{role}_token_id")
        if value is not None:
            special[{"unknown": "unk", "padding": "pad"}.get(role, role)] = int(value)
    return GgufTokenizer(
        model=get("tokenizer.ggml.model", ""),
        pre=get("tokenizer.ggml.pre", "default"),
        tokens=list(get("tokenizer.ggml.tokens", [])),
        types=[int(t) for t in get("tokenizer.ggml.token_type", [])],
        merges=list(get("tokenizer.ggml.merges", [])),
        special=special,
        add_bos=bool(get("tokenizer.ggml.add_bos_token", False)),
        add_eos=bool(get("tokenizer.ggml.add_eos_token", False)),
        chat_template=get("tokenizer.chat_template"),
    )


def _pre_tokenizer(pre: str):
    """HF pre-tokenizer equal to llama.cpp's named one (llama-vocab.cpp)."""
    from tokenizers import pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    if pre == "smollm":  # single digits, then GPT-2 byte-level splitting
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in ("gpt-2", "default"):
        return byte_level
    raise StageError(
        f"the GGUF's pre-tokenizer '{pre}' cannot be rebuilt as an HF tokenizer yet (supported: smollm, gpt-2). "
        f"Import the model from its HF folder instead: set model.path to it.")


def build_tokenizer(vocab: GgufTokenizer):
    """A PreTrainedTokenizerFast that tokenizes exactly like llama.cpp does with this GGUF."""
    from tokenizers import AddedToken, Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    if vocab.model != "gpt2":
        raise StageError(
            f"the GGUF's tokenizer model is '{vocab.model}'; only byte-level BPE ('gpt2') can be rebuilt. "
            f"Import the model from its HF folder instead: set model.path to it.")
    ids = {token: index for index, token in enumerate(vocab.tokens)}
    merges = [tuple(m.split(" ", 1)) for m in vocab.merges]
    tokenizer = Tokenizer(models.BPE(vocab=ids, merges=merges, fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = _pre_tokenizer(vocab.pre)
    tokenizer.decoder = decoders.ByteLevel()
    added = [AddedToken(token, special=(kind == CONTROL), normalized=False)
             for token, kind in zip(vocab.tokens, vocab.types or [NORMAL] * len(vocab.tokens), strict=True)
             if kind in (CONTROL, USER_DEFINED)]
    tokenizer.add_tokens(added)
    named = {f"{role}_token": vocab.tokens[index] for role, index in vocab.special.items()}
    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer, clean_up_tokenization_spaces=False, **named)
    hf.add_bos_token = vocab.add_bos
    hf.add_eos_token = vocab.add_eos
    if vocab.chat_template:
        hf.chat_template = vocab.chat_template
    return hf


def import_gguf(gguf_path: Path, out: Path) -> dict:
    """Write an HF folder (safetensors, config, rebuilt tokenizer) for a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM

    vocab = read_vocab(gguf_path)
    tokenizer = build_tokenizer(vocab)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as err:
        raise StageError(f"transformers cannot load the weights of {gguf_path.name}: {err}") from None
    # the GGUF's special ids are the truth; transformers' guesses may differ
    for role, index in vocab.special.items():
        if role == "unk":
            continue
        setattr(model.config, f"{role}_token_id", index)
        if model.generation_config is not None:
            setattr(model.generation_config, f"{role}_token_id", index)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return {"pre_tokenizer": vocab.pre, "vocab_size": len(vocab.tokens), "special": vocab.special}
