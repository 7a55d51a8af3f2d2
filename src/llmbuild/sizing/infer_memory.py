"""Inference memory in llama.cpp for each quant type: the weights and the KV cache at a context
length. Pure functions over a `ModelShape`: no I/O; report.py prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..facts.quant_types import QUANT_TYPES
from .params import ModelShape, parameter_count

# weights   parameters x the quant type's bits per weight (quant_types.QUANT_TYPES: llama.cpp's
#           published figures for a 7-8B model, whole file, so the higher-precision embeddings and
#           output tensor of the K-quant mixes are included). Models whose row sizes are not
#           multiples of 256 (SmolLM2's 576) fall back to other types for some tensors.
# KV cache  K and V, f16 (llama.cpp's default cache type), for every layer and every position
#           of the context: 2 x layers x n_ctx x kv_dim x 2 bytes.
# Not modelled: llama.cpp's compute buffers (typically a few hundred MiB) and the process itself.

KV_CACHE_BYTES = 2  # f16


def kv_cache_bytes(shape: ModelShape, n_ctx: int) -> int:
    return 2 * shape.num_hidden_layers * n_ctx * shape.kv_dim * KV_CACHE_BYTES


@dataclass(frozen=True)
class InferenceMemory:
    quant: str
    bits: float
    weights: int
    kv_cache: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache


def inference_memory(shape: ModelShape, n_ctx: int) -> list[InferenceMemory]:
    total, kv = parameter_count(shape).total, kv_cache_bytes(shape, n_ctx)
    types = sorted(QUANT_TYPES.values(), key=lambda q: -q.bits)
    return [InferenceMemory(q.name, q.bits, round(total * q.bits / 8), kv) for q in types]
