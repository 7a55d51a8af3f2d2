"""llama.cpp's GGUF file types, by llama.cpp's own names (lower case), as facts, the record the
quantize stage keeps of what llama.cpp's quantizer wrote, and how close to its reference a quant
must stay for the report to recommend it.

`llama_ftype` is the constant in llama.h / llama_cpp.py; `bits` is llama.cpp's quoted bits per
weight for a 7B model (`llama-quantize --help`), used for size estimates. Each type is an option of
the `quant` config group (`quant=q4_k_m`), registered from this table (config/schema.py), so a type
is added here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QuantType:
    name: str
    llama_ftype: str
    bits: float
    note: str          # what the type is for, in a line: the trade-off for whoever picks one


QUANT_TYPES = {q.name: q for q in (
    QuantType("f32", "LLAMA_FTYPE_ALL_F32", 32.0,
              "full 32-bit float: reference only, 2x the size of f16."),
    QuantType("f16", "LLAMA_FTYPE_MOSTLY_F16", 16.0,
              "16-bit float: lossless for most models, the base every other type is made from."),
    QuantType("bf16", "LLAMA_FTYPE_MOSTLY_BF16", 16.0,
              "bfloat16: lossless for models trained in bf16."),
    QuantType("q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0", 8.5,
              "8-bit: practically lossless (perplexity within noise of f16), about half of f16."),
    QuantType("q6_k", "LLAMA_FTYPE_MOSTLY_Q6_K", 6.56,
              "6-bit k-quant: very close to q8_0, smaller."),
    QuantType("q5_k_m", "LLAMA_FTYPE_MOSTLY_Q5_K_M", 5.67,
              "5-bit k-quant, medium: a common quality choice for 7-8B models."),
    QuantType("q5_k_s", "LLAMA_FTYPE_MOSTLY_Q5_K_S", 5.52,
              "5-bit k-quant, small."),
    QuantType("q5_1", "LLAMA_FTYPE_MOSTLY_Q5_1", 6.0,
              "5-bit legacy quant with offset."),
    QuantType("q5_0", "LLAMA_FTYPE_MOSTLY_Q5_0", 5.5,
              "5-bit legacy quant."),
    QuantType("q4_k_m", "LLAMA_FTYPE_MOSTLY_Q4_K_M", 4.89,
              "4-bit k-quant, medium: the usual size/quality trade-off for deployment."),
    QuantType("q4_k_s", "LLAMA_FTYPE_MOSTLY_Q4_K_S", 4.58,
              "4-bit k-quant, small."),
    QuantType("q4_1", "LLAMA_FTYPE_MOSTLY_Q4_1", 5.0,
              "4-bit legacy quant with offset."),
    QuantType("q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0", 4.5,
              "4-bit legacy quant: fastest on some CPUs, lower quality than q4_k_m."),
    QuantType("iq4_nl", "LLAMA_FTYPE_MOSTLY_IQ4_NL", 4.5,
              "4-bit non-linear quant."),
    QuantType("iq4_xs", "LLAMA_FTYPE_MOSTLY_IQ4_XS", 4.25,
              "4.25-bit i-quant."),
    QuantType("q3_k_l", "LLAMA_FTYPE_MOSTLY_Q3_K_L", 4.27,
              "3-bit k-quant, large."),
    QuantType("q3_k_m", "LLAMA_FTYPE_MOSTLY_Q3_K_M", 3.91,
              "3-bit k-quant, medium: noticeable quality loss on small models."),
    QuantType("q3_k_s", "LLAMA_FTYPE_MOSTLY_Q3_K_S", 3.5,
              "3-bit k-quant, small."),
    QuantType("q2_k", "LLAMA_FTYPE_MOSTLY_Q2_K", 3.35,
              "2-bit k-quant: smallest; large quality loss below 30B parameters."),
)}

# what convert_hf_to_gguf.py itself can write (--outtype); everything else comes from the quantizer
CONVERT_TYPES = ("f32", "f16", "bf16")

# eval.recommend_kld's default: the report recommends the smallest quant (GGUF, or vLLM checkpoint)
# whose mean KLD from its reference is below it. On Llama-3-8B, llama.cpp's own KLD table
# (tools/perplexity/README.md) has every K-quant from Q4_K_S up below 0.05 (Q4_K_M 0.031, Q5_K_M
# 0.011, Q6_K 0.005, Q8_0 0.001) and the legacy 4-bit and all 3-bit and smaller types above it
# (Q4_0 0.072, Q3_K_M 0.10, Q2_K 0.45): 0.05 passes the quants commonly shipped as "close to f16"
# and rejects those whose answers visibly change. Small models quantize worse, so their ladder may
# recommend nothing below 8 bits; that is the point of measuring.
RECOMMEND_KLD = 0.05


@dataclass(frozen=True)
class QuantizeRecord:
    """What llama.cpp's quantizer wrote: the quantized tensors by the type written (f32 norms and
    the like are copied, not counted), and of those, the ones whose rows do not fit the requested
    type's block, by the type llama.cpp fell back to (a 576-wide row cannot be a K-quant: those
    need multiples of 256). quantize.json is `record_json(...)` of it."""

    types: dict[str, int] = field(default_factory=dict)
    fallback: dict[str, int] = field(default_factory=dict)

    @property
    def quantized(self) -> int:
        return sum(self.types.values())

    def to_json(self) -> dict[str, Any]:
        return {"quantized_tensors": self.quantized, "types": self.types, "fallback": self.fallback}

    def record_json(self, quant_type: str) -> dict[str, Any]:
        """quantize.json: the type asked for, then what was written."""
        return {"type": quant_type, **self.to_json()}


def fallback_text(record: dict[str, Any], noun: str = "") -> str:
    """"180 of 211{noun} (q5_0 166, q8_0 14)" from a quantize.json record: the
    quantized tensors llama.cpp wrote in another type than asked."""
    fallback = record.get("fallback") or {}
    types = ", ".join(f"{name} {count}" for name, count in sorted(fallback.items()))
    return (f"{sum(fallback.values())} of {record.get('quantized_tensors', '?')}{noun}"
            + (f" ({types})" if types else ""))
