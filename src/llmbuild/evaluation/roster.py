"""The models one eval runs, and the names and kinds that eval.json and the report know them by.
The stage lists them (`Entry`); the report looks two of them up by name (`BASE`, `TUNED`), so
both read the names from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE = "base"            # the model training started from: the "was the fine-tune worth it" baseline
TUNED = "fine-tuned"     # the last training stage's merged model; vLLM checkpoints are measured against it

# how the worker loads a model, and how the report groups it
HF = "hf"                # an HF folder, run in transformers
GGUF = "gguf"            # a GGUF file, run in llama.cpp
VLLM = "vllm"            # a compressed-tensors checkpoint, run in transformers in the quant environment


@dataclass(frozen=True)
class Entry:
    name: str                   # BASE, an earlier pipeline stage's name, TUNED, or the GGUF's or checkpoint's type
    kind: str                   # HF, GGUF or VLLM
    path: Path                  # the HF folder, the GGUF file or the checkpoint's folder
    quant: str | None = None    # the GGUF's type or the checkpoint's scheme
    quantized: dict[str, Any] | None = None   # a quant's quantize.json (facts/quant_types.py)
    checkpoint: dict[str, Any] | None = None  # a vLLM checkpoint's vllm_quant.json: scheme, method, calibration

