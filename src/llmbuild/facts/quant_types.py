"""llama.cpp's GGUF file types, by llama.cpp's own names (lower case), as facts, the record the
quantize stage keeps of what llama.cpp's quantizer wrote, and how close to its reference a quant
must stay for the report to recommend it.

`llama_ftype` is the constant in llama.h / llama_cpp.py; `bits` is llama.cpp's quoted bits per
weight for a 7B model (`llama-quantize --help`), used for size estimates; every file type that
llama.cpp's quantizer writes is here (its aliases q3_k, q4_k, q5_k and COPY are not). Each type is an option of
the `quant` config group (`quant=q4_k_m`), registered from this table (config/schema.py), so a type
is added here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# what an importance matrix does for a type's quantizer (llama.cpp: ggml-quants.c reads its
# `quant_weights` or ignores them; llama-quant.cpp refuses the i-quants below 4 bits and q2_k_s
# without one). llmbuild requires one for every i-quant and for q2_k too: their error without one
# is the largest of their size class (llama.cpp's KLD table: q2_k 0.445 -> 0.332 with one).
IMATRIX_NONE = "none"            # the quantizer ignores it (f16, q8_0, q1_0, q2_0, mxfp4, ternary)
IMATRIX_HELPS = "helps"          # it weighs the rounding error by it (k-quants, legacy 4/5-bit)
IMATRIX_REQUIRED = "required"    # built only with one (i-quants, q2_k)


@dataclass(frozen=True)
class QuantType:
    name: str
    llama_ftype: str
    bits: float
    note: str          # what the type is for, in a line: the trade-off for whoever picks one
    imatrix: str = IMATRIX_NONE


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
              "6-bit k-quant: very close to q8_0, smaller.", IMATRIX_HELPS),
    QuantType("q5_k_m", "LLAMA_FTYPE_MOSTLY_Q5_K_M", 5.67,
              "5-bit k-quant, medium: a common quality choice for 7-8B models.", IMATRIX_HELPS),
    QuantType("q5_k_s", "LLAMA_FTYPE_MOSTLY_Q5_K_S", 5.52,
              "5-bit k-quant, small.", IMATRIX_HELPS),
    QuantType("q5_1", "LLAMA_FTYPE_MOSTLY_Q5_1", 6.0,
              "5-bit legacy quant with offset.", IMATRIX_HELPS),
    QuantType("q5_0", "LLAMA_FTYPE_MOSTLY_Q5_0", 5.5,
              "5-bit legacy quant.", IMATRIX_HELPS),
    QuantType("q4_k_m", "LLAMA_FTYPE_MOSTLY_Q4_K_M", 4.89,
              "4-bit k-quant, medium: the usual size/quality trade-off for deployment.", IMATRIX_HELPS),
    QuantType("q4_k_s", "LLAMA_FTYPE_MOSTLY_Q4_K_S", 4.58,
              "4-bit k-quant, small.", IMATRIX_HELPS),
    QuantType("q4_1", "LLAMA_FTYPE_MOSTLY_Q4_1", 5.0,
              "4-bit legacy quant with offset.", IMATRIX_HELPS),
    QuantType("q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0", 4.5,
              "4-bit legacy quant: fastest on some CPUs, lower quality than q4_k_m.", IMATRIX_HELPS),
    QuantType("mxfp4_moe", "LLAMA_FTYPE_MOSTLY_MXFP4_MOE", 4.25,
              "MXFP4 (4-bit floating point) for the experts of a mixture-of-experts model (gpt-oss).",
              IMATRIX_HELPS),
    QuantType("iq4_nl", "LLAMA_FTYPE_MOSTLY_IQ4_NL", 4.5,
              "4-bit non-linear i-quant.", IMATRIX_REQUIRED),
    QuantType("iq4_xs", "LLAMA_FTYPE_MOSTLY_IQ4_XS", 4.25,
              "4.25-bit i-quant: close to q4_k_m, about 10% smaller.", IMATRIX_REQUIRED),
    QuantType("q3_k_l", "LLAMA_FTYPE_MOSTLY_Q3_K_L", 4.27,
              "3-bit k-quant, large.", IMATRIX_HELPS),
    QuantType("q3_k_m", "LLAMA_FTYPE_MOSTLY_Q3_K_M", 3.91,
              "3-bit k-quant, medium: noticeable quality loss on small models.", IMATRIX_HELPS),
    QuantType("iq3_m", "LLAMA_FTYPE_MOSTLY_IQ3_M", 3.66,
              "3.66-bit i-quant mix.", IMATRIX_REQUIRED),
    QuantType("q3_k_s", "LLAMA_FTYPE_MOSTLY_Q3_K_S", 3.5,
              "3-bit k-quant, small.", IMATRIX_HELPS),
    QuantType("iq3_s", "LLAMA_FTYPE_MOSTLY_IQ3_S", 3.44,
              "3.44-bit i-quant.", IMATRIX_REQUIRED),
    QuantType("q2_k", "LLAMA_FTYPE_MOSTLY_Q2_K", 3.35,
              "2-bit k-quant: large quality loss below 30B parameters.", IMATRIX_REQUIRED),
    QuantType("iq3_xs", "LLAMA_FTYPE_MOSTLY_IQ3_XS", 3.3,
              "3.3-bit i-quant.", IMATRIX_REQUIRED),
    QuantType("iq3_xxs", "LLAMA_FTYPE_MOSTLY_IQ3_XXS", 3.06,
              "3.06-bit i-quant.", IMATRIX_REQUIRED),
    QuantType("q2_k_s", "LLAMA_FTYPE_MOSTLY_Q2_K_S", 2.96,
              "2-bit k-quant, small.", IMATRIX_REQUIRED),
    QuantType("iq2_m", "LLAMA_FTYPE_MOSTLY_IQ2_M", 2.7,
              "2.7-bit i-quant mix: for models of 30B parameters and more.", IMATRIX_REQUIRED),
    QuantType("iq2_s", "LLAMA_FTYPE_MOSTLY_IQ2_S", 2.5,
              "2.5-bit i-quant.", IMATRIX_REQUIRED),
    QuantType("iq2_xs", "LLAMA_FTYPE_MOSTLY_IQ2_XS", 2.31,
              "2.31-bit i-quant.", IMATRIX_REQUIRED),
    QuantType("q2_0", "LLAMA_FTYPE_MOSTLY_Q2_0", 2.25,
              "2-bit legacy-style quant in groups of 64.", IMATRIX_HELPS),
    QuantType("iq2_xxs", "LLAMA_FTYPE_MOSTLY_IQ2_XXS", 2.06,
              "2.06-bit i-quant.", IMATRIX_REQUIRED),
    QuantType("tq2_0", "LLAMA_FTYPE_MOSTLY_TQ2_0", 2.06,
              "ternary (-1, 0, 1) weights: only for models trained ternary (BitNet b1.58).", IMATRIX_NONE),
    QuantType("iq1_m", "LLAMA_FTYPE_MOSTLY_IQ1_M", 1.75,
              "1.75-bit i-quant: for the largest models only.", IMATRIX_REQUIRED),
    QuantType("tq1_0", "LLAMA_FTYPE_MOSTLY_TQ1_0", 1.69,
              "ternary weights, packed tighter: only for models trained ternary (BitNet b1.58).", IMATRIX_NONE),
    QuantType("iq1_s", "LLAMA_FTYPE_MOSTLY_IQ1_S", 1.56,
              "1.56-bit i-quant: for the largest models only.", IMATRIX_REQUIRED),
    QuantType("q1_0", "LLAMA_FTYPE_MOSTLY_Q1_0", 1.125,
              "1-bit quant: for models trained at 1 bit.", IMATRIX_NONE),
)}

# the ggml tensor types quant.tensor_types, quant.output_tensor_type and quant.token_embedding_type
# may name (llama-quantize reads any ggml type name, in any case; these are the ones a weight can be
# quantized to, from best to smallest)
TENSOR_TYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k", "q5_1", "q5_0", "q4_k", "q4_1", "q4_0", "iq4_xs",
                "iq4_nl", "mxfp4", "q3_k", "iq3_s", "iq3_xxs", "q2_k", "iq2_s", "iq2_xs", "q2_0", "iq2_xxs",
                "tq2_0", "iq1_m", "tq1_0", "iq1_s", "q1_0")
# tensor types that llama.cpp quantizes only with an importance matrix (llama-quant.cpp)
TENSOR_TYPES_NEEDING_IMATRIX = ("iq3_xxs", "iq2_s", "iq2_xs", "iq2_xxs", "iq1_m", "iq1_s")

# quant.imatrix's words; anything else is the path of an importance matrix file of the user's own
IMATRIX_AUTO, IMATRIX_OFF = "auto", "none"


OWN_IMATRIX = "quant.imatrix"   # the imatrix stage's input file, by its config key, when the setting names one


def own_imatrix(setting: str) -> bool:
    """quant.imatrix names a file of the user's own."""
    return setting not in (IMATRIX_AUTO, IMATRIX_OFF)


def uses_imatrix(quant_type: str, setting: str) -> bool:
    """Whether `quant_type` is quantized with an importance matrix under quant.imatrix=`setting`:
    every type whose quantizer reads one, unless the setting is none."""
    return setting != IMATRIX_OFF and QUANT_TYPES[quant_type].imatrix != IMATRIX_NONE


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

# eval.kld_tokens's default: KLD, top-1 and perplexity of each GGUF over at least this many held-out
# tokens. Measured on the demo (bench/results/imatrix-2cpu.md): over 1,469 tokens the 95% interval of
# every quant's KLD is about +-6% of it, enough to separate each type from its neighbours and each
# with an importance matrix from itself without one; the interval narrows as 1/sqrt(tokens), so 4096
# gives about +-4% and room for models whose per-token KLD varies more. The demo's 4 held-out rows
# alone (about 300 tokens) would give about +-13%: too wide to tell q4_k_m (0.048) from q5_0 (0.060).
KLD_TOKENS = 4096


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
