"""The GPU checkpoint formats llmbuild writes for vLLM (target.vllm.quants): compressed-tensors
folders made by llm-compressor, each a scheme of its own.

`preset` is llm-compressor's preset scheme name; `method` how the weights are chosen (its
modifiers); `group_size` the number of input features that share one scale (None: one scale per
output channel), so a linear layer whose inputs are not a multiple of it cannot take the scheme.
`bits` is the weights' storage width, for size estimates and the report.
"""

from __future__ import annotations

from dataclasses import dataclass

MERGED = "merged"   # what target.vllm.serve calls the merged model itself (vLLM serves it in 16 bits)


@dataclass(frozen=True)
class Scheme:
    name: str
    preset: str                 # llm-compressor's preset (QuantizationScheme) name
    method: str                 # "dynamic" (no data), "smoothquant+gptq", "gptq", "awq"
    calibrated: bool            # needs calibration samples
    bits: int                   # weight bits
    activations: str            # what happens to activations, for people
    group_size: int | None      # inputs per weight scale; None: per output channel
    about: str                  # one line for people (README, messages, report)


SCHEMES = {s.name: s for s in (
    Scheme("fp8", "FP8_DYNAMIC", "dynamic", False, 8, "FP8, scaled per token at run time", None,
           "FP8 weights per channel and dynamic per-token FP8 activations; no calibration (Hopper/Ada GPUs, "
           "or weight-only FP8 on older ones)"),
    Scheme("w8a8", "W8A8", "smoothquant+gptq", True, 8, "INT8, scaled per token at run time", None,
           "INT8 weights (GPTQ) and INT8 activations after SmoothQuant, calibrated on the training data"),
    Scheme("w4a16", "W4A16", "gptq", True, 4, "16-bit", 128,
           "INT4 weights in groups of 128 (GPTQ, calibrated on the training data), 16-bit activations"),
    Scheme("w4a16-awq", "W4A16_ASYM", "awq", True, 4, "16-bit", 128,
           "INT4 weights in groups of 128 with zero points (AWQ, calibrated on the training data), 16-bit "
           "activations"),
)}

def built(quants, serve: str) -> list[str]:
    """The schemes a build makes: target.vllm.quants in order, once each, and the served one unless it is
    the merged model itself."""
    return [s for s in dict.fromkeys([*quants, serve]) if s != MERGED]


# the layers every scheme leaves at 16 bits: the output head decides every token
IGNORED_LAYERS = ("lm_head",)


def shape_problem(scheme: Scheme, linear_inputs: dict[str, int]) -> str | None:
    """Why a model whose linear layers take these input sizes (layer name -> in_features) cannot
    take the scheme, or None."""
    if scheme.group_size is None:
        return None
    bad = {name: size for name, size in linear_inputs.items() if size % scheme.group_size}
    if not bad:
        return None
    shown = ", ".join(f"{name} ({size})" for name, size in sorted(bad.items()))
    return (f"{scheme.name} quantizes weights in groups of {scheme.group_size} inputs, and these layers' inputs "
            f"are not a multiple of {scheme.group_size}: {shown}")


def fit_problem(scheme: Scheme, linear_inputs: dict[str, int]) -> str | None:
    """shape_problem, with what to do about it."""
    problem = shape_problem(scheme, linear_inputs)
    fitting = [name for name, other in SCHEMES.items() if not shape_problem(other, linear_inputs)]
    return (f"{problem}. This model can take {' or '.join(fitting)} (one scale per output channel); take "
            f"{scheme.name} out of target.vllm.quants (and target.vllm.serve)") if problem else None
