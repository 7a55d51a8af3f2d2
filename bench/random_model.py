"""A randomly initialised model of a real model's shape, with a tokenizer you already have.

No weights can be downloaded on the GPU machines, and throughput, memory and the cost of each
build stage depend only on the shape. Quality is meaningless.

    python bench/random_model.py --shape qwen2.5-7b --tokenizer TOKDIR --out /tmp/qwen7b-random

TOKDIR is an HF tokenizer folder, or a llama.cpp vocabulary (a .gguf file such as the llama-cpp-python
sdist's models/ggml-vocab-qwen2.gguf), rebuilt as llmbuild imports a GGUF's tokenizer, so that llama.cpp
recognises it and the build's parity check passes (transformers' own GGUF loader makes a tokenizer
that splits some text differently from llama.cpp).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SHAPES = {  # from the models' published config.json files
    "qwen2.5-7b": dict(architecture="Qwen2ForCausalLM", hidden_size=3584, intermediate_size=18944,
                       num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                       rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False),
    "qwen2.5-0.5b": dict(architecture="Qwen2ForCausalLM", hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--tokenizer", required=True, help="an HF tokenizer folder")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    started = time.time()
    if args.tokenizer.endswith(".gguf"):
        from llmbuild.adapters.gguf_import import build_tokenizer, read_vocab
        from llmbuild.adapters.gguf_tokenizer import save_tokenizer
        vocab = read_vocab(Path(args.tokenizer))
        tokenizer = build_tokenizer(vocab)
    else:
        vocab, tokenizer = None, AutoTokenizer.from_pretrained(args.tokenizer)
    shape = dict(SHAPES[args.shape])
    shape.pop("architecture")
    config = Qwen2Config(vocab_size=len(tokenizer), max_position_embeddings=32768, torch_dtype="bfloat16",
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **shape)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True)
    if vocab is not None:
        save_tokenizer(vocab, tokenizer, Path(args.out))
    else:
        tokenizer.save_pretrained(args.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.shape}: {params / 1e9:.2f} B parameters written to {args.out} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
