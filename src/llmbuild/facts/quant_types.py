"""llama.cpp's GGUF file types, by llama.cpp's own names (lower case), as facts, and the record the
quantize stage keeps of what llama.cpp's quantizer wrote.

`llama_ftype` is the constant in llama.h / llama_cpp.py; `bits` is llama.cpp's quoted bits per
weight for a 7B model (`llama-quantize --help`), used for size estimates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QuantType:
    name: str
    llama_ftype: str
    bits: float


QUANT_TYPES = {q.name: q for q in (
    QuantType("f32", "LLAMA_FTYPE_ALL_F32", 32.0),
    QuantType("f16", "LLAMA_FTYPE_MOSTLY_F16", 16.0),
    QuantType("bf16", "LLAMA_FTYPE_MOSTLY_BF16", 16.0),
    QuantType("q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0", 8.5),
    QuantType("q6_k", "LLAMA_FTYPE_MOSTLY_Q6_K", 6.56),
    QuantType("q5_k_m", "LLAMA_FTYPE_MOSTLY_Q5_K_M", 5.67),
    QuantType("q5_k_s", "LLAMA_FTYPE_MOSTLY_Q5_K_S", 5.52),
    QuantType("q5_1", "LLAMA_FTYPE_MOSTLY_Q5_1", 6.0),
    QuantType("q5_0", "LLAMA_FTYPE_MOSTLY_Q5_0", 5.5),
    QuantType("q4_k_m", "LLAMA_FTYPE_MOSTLY_Q4_K_M", 4.89),
    QuantType("q4_k_s", "LLAMA_FTYPE_MOSTLY_Q4_K_S", 4.58),
    QuantType("q4_1", "LLAMA_FTYPE_MOSTLY_Q4_1", 5.0),
    QuantType("q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0", 4.5),
    QuantType("iq4_nl", "LLAMA_FTYPE_MOSTLY_IQ4_NL", 4.5),
    QuantType("iq4_xs", "LLAMA_FTYPE_MOSTLY_IQ4_XS", 4.25),
    QuantType("q3_k_l", "LLAMA_FTYPE_MOSTLY_Q3_K_L", 4.27),
    QuantType("q3_k_m", "LLAMA_FTYPE_MOSTLY_Q3_K_M", 3.91),
    QuantType("q3_k_s", "LLAMA_FTYPE_MOSTLY_Q3_K_S", 3.5),
    QuantType("q2_k", "LLAMA_FTYPE_MOSTLY_Q2_K", 3.35),
)}

# what convert_hf_to_gguf.py itself can write (--outtype); everything else comes from the quantizer
CONVERT_TYPES = ("f32", "f16", "bf16")


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
