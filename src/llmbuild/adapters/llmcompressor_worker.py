"""Quantize one HF model with llm-compressor, in the quant environment (facts/tool_envs.py):

    <quant env>/bin/python -m llmbuild.adapters.llmcompressor_worker request.json

The request names the model folder, the output folder, llm-compressor's preset scheme and method,
the layers left alone and the calibration texts. It writes a compressed-tensors folder (weights,
config with its quantization_config, tokenizer) that vLLM loads. Imports nothing of llmbuild's: that
environment has llm-compressor's pins, not llmbuild's dependencies.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def recipe(method: str, preset: str, ignore: list[str]) -> list[Any]:
    """llm-compressor's modifiers for a method (facts/vllm_schemes.py names them)."""
    if method == "dynamic":
        from llmcompressor.modifiers.quantization import QuantizationModifier

        return [QuantizationModifier(targets="Linear", scheme=preset, ignore=ignore)]
    if method == "smoothquant+gptq":
        from llmcompressor.modifiers.quantization import GPTQModifier
        from llmcompressor.modifiers.smoothquant import SmoothQuantModifier

        return [SmoothQuantModifier(smoothing_strength=0.8),
                GPTQModifier(targets="Linear", scheme=preset, ignore=ignore)]
    if method == "gptq":
        from llmcompressor.modifiers.quantization import GPTQModifier

        return [GPTQModifier(targets="Linear", scheme=preset, ignore=ignore)]
    if method == "awq":   # AWQ's smoothing is a transform of its own since llm-compressor 0.14
        from llmcompressor.modifiers.quantization import QuantizationModifier
        from llmcompressor.modifiers.transform.awq import AWQModifier

        return [AWQModifier(duo_scaling="both"), QuantizationModifier(targets="Linear", scheme=preset, ignore=ignore)]
    raise SystemExit(f"unknown quantization method {method!r}")


def _without_pinned_memory() -> None:
    """llm-compressor's AWQ pins its cached activations so that copies to a GPU can overlap; torch cannot
    pin memory without a GPU, and pinning changes no value: skip it on a machine without one."""
    import torch
    from llmcompressor.pipelines.cache import IntermediatesCache

    if not torch.accelerator.is_available():
        IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None


def quantize(request: dict[str, Any]) -> dict[str, Any]:
    import torch
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _without_pinned_memory()
    torch.manual_seed(request["seed"])
    model = AutoModelForCausalLM.from_pretrained(request["model"], dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(request["model"])
    modifiers = recipe(request["method"], request["preset"], request["ignore"])
    started = time.perf_counter()
    texts = request["calibration"]
    if texts:
        from datasets import Dataset

        encoded = [tokenizer(text, add_special_tokens=False, truncation=True, max_length=request["max_len"])
                   for text in texts]
        dataset = Dataset.from_list([{"input_ids": e["input_ids"], "attention_mask": e["attention_mask"]}
                                     for e in encoded])
        print(f"calibrating {request['preset']} on {len(texts)} samples", flush=True)
        oneshot(model=model, dataset=dataset, recipe=modifiers, max_seq_length=request["max_len"],
                num_calibration_samples=len(texts))
        tokens = sum(len(e["input_ids"]) for e in encoded)
    else:
        oneshot(model=model, recipe=modifiers)
        tokens = 0
    seconds = time.perf_counter() - started
    out = Path(request["out"])
    model.save_pretrained(out, save_compressed=True)
    tokenizer.save_pretrained(out)
    return {"seconds": round(seconds, 2), "calibration_samples": len(texts), "calibration_tokens": tokens}


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    result = quantize(request)
    Path(argv[2]).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
