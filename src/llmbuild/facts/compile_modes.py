"""`train.compile`: what torch.compile (inductor) compiles of the model being trained.

Measured on an H200 (bench/results/README.md): with each decoder layer compiled inductor fuses the
norms, SwiGLU, rotary embeddings and LoRA's casts, scalings and adds around every adapted projection
into a few kernels, and matrix products take 77% of the GPU's time instead of 61%. Left to itself,
inductor rounds to bf16 once per fused kernel where eager PyTorch rounds after every operation, which
moves the loss curve (towards fp32's); by default llmbuild has it round where eager PyTorch does
(`ROUNDINGS`, `environment`), so compiling is a speed-up and not another optimisation: losses within 0.001
of the eager run's at the same speed.
"""

from __future__ import annotations

NONE = "none"
LAYERS = "layers"
MODEL = "model"

MODES = {
    NONE: "no compilation: PyTorch runs each operation as it comes (eager)",
    # LLaMA-Factory has no option for it: llmbuild's launcher (adapters/llamafactory_compiled.py) runs
    # LLaMA-Factory's training with the layers compiled in place, Liger's fused loss outside them
    LAYERS: "each decoder layer compiled; with train.liger_kernel, Liger's fused linear cross-entropy only "
            "(inductor fuses what its other kernels would)",
    # LLaMA-Factory's torch_compile (the HF Trainer's): one graph of the whole model, the loss included
    MODEL: "the whole model compiled as one graph (LLaMA-Factory's torch_compile); not with Liger",
}


# `train.compile_rounding`: where compiled code rounds bf16 results (inductor's emulate_precision_casts).
# Measured on an H200, 7B shape, LoRA r=8, batch 8 (bench/results/README.md): loss at step 6 of 10, eager
# bf16 12.207, compiled with eager rounding 12.207, compiled with kernel rounding 11.921, fp32 11.958; the
# same tokens/s both ways. On a real SmolLM2-135M on the CPU, kernel rounding was 5x closer to fp32 than
# eager bf16 (mean |loss - fp32| 0.021 against 0.101 over 30 steps)
EAGER = "eager"
KERNEL = "kernel"
ROUNDINGS = {
    EAGER: "round to bf16 after every operation, as eager PyTorch does: compiling changes the speed, not the "
           "loss curve",
    KERNEL: "round to bf16 once per fused kernel (inductor's default): closer to fp32 arithmetic, so the loss "
            "curve differs from an eager run's",
}
_EMULATE = "TORCHINDUCTOR_EMULATE_PRECISION_CASTS"


def environment(mode: str, rounding: str) -> dict[str, str]:
    """The variables the training process runs with under `train.compile=mode`."""
    return {} if mode == NONE else {_EMULATE: "1" if rounding == EAGER else "0"}
