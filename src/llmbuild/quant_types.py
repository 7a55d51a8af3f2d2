"""llama.cpp's GGUF file types, by llama.cpp's own names (lower case), as facts.

`llama_ftype` is the constant in llama.h / llama_cpp.py; `bits` is llama.cpp's quoted bits per
weight for a 7B model (`llama-quantize --help`), used for size estimates.
"""

from __future__ import annotations

from dataclasses import dataclass


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
