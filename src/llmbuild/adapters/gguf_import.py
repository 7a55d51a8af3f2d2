"""GGUF -> HF model folder.

Weights: transformers' GGUF loader (it dequantizes). Tokenizer: rebuilt from the GGUF's own
vocabulary so that it gives llama.cpp's token ids and llama.cpp's converter recognises it again
(gguf_tokenizer.py says how, and why not through transformers' GGUF tokenizer import).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import StageError
from .gguf_tokenizer import GgufTokenizer, build_tokenizer, read_vocab, save_tokenizer

__all__ = ["GgufTokenizer", "build_tokenizer", "import_gguf", "read_vocab"]


def import_gguf(gguf_path: Path, out: Path) -> dict:
    """Write an HF folder (safetensors, config, rebuilt tokenizer) for a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM

    vocab = read_vocab(gguf_path)
    if vocab.model == "gpt2" and vocab.pre == "default":
        # llama.cpp then splits text by a generic rule that no HF tokenizer has: its converter could not
        # name the pre-tokenizer of the trained model, so the build would fail only after training
        raise StageError(f"{gguf_path.name} names no pre-tokenizer (tokenizer.ggml.pre: converted by an old "
                         f"llama.cpp), so the trained model could not be converted back to GGUF. "
                         f"Import the model from its HF folder instead: set model.path to it.")
    tokenizer = build_tokenizer(vocab)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as err:
        raise StageError(f"transformers cannot load the weights of {gguf_path.name}: {err}") from None
    # the GGUF's special ids are the truth; transformers' guesses may differ
    for role, index in vocab.special.items():
        if role not in ("bos", "eos", "pad"):
            continue
        setattr(model.config, f"{role}_token_id", index)
        if model.generation_config is not None:
            setattr(model.generation_config, f"{role}_token_id", index)
    model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(vocab, tokenizer, out)
    pre = {"llama": "none (SentencePiece)", "gemma4": "gemma4"}.get(vocab.model, vocab.pre)
    return {"pre_tokenizer": pre, "vocab_size": len(vocab.tokens), "special": vocab.special}
