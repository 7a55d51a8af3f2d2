"""LLaMA-Factory's training with each decoder layer compiled by torch.compile (`train.compile=layers`),
which LLaMA-Factory has no option for. Run inside the train artifact, like `llamafactory-cli train`:

    python -m llmbuild.adapters.llamafactory_compiled [--fused-loss] llamafactory.yaml

The YAML is LLaMA-Factory's own, read as `llamafactory-cli train` reads it; the layers are compiled in
place (`module.compile()`) when training begins, after LoRA has wrapped their projections, so inductor
fuses the norms, activations, rotary embeddings and LoRA's casts and adds into the layers' kernels.
`--fused-loss`: Liger's fused linear cross-entropy and none of its other kernels (they would sit inside
the compiled layers, where Liger's Triton kernels fail to compile and inductor fuses the same operations);
the loss stays outside the compiled graphs.

On several GPUs (FORCE_TORCHRUN=1 and NPROC_PER_NODE, as for LLaMA-Factory's launcher) it starts torchrun
on itself as that launcher does, with NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT from the environment.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import ToolError

MODULE = "llmbuild.adapters.llamafactory_compiled"
FUSED_LOSS = "--fused-loss"


def program(fused_loss: bool, python: str = sys.executable) -> list[str]:
    """The command line (without the YAML) that trains with compiled decoder layers."""
    return [python, "-m", MODULE, *([FUSED_LOSS] if fused_loss else [])]


def torchrun_command(argv: list[str], environ: Mapping[str, str], free_port: int) -> list[str] | None:
    """torchrun (`python -m torch.distributed.run`) on this module for several GPUs (FORCE_TORCHRUN=1,
    as llmbuild's launch environment sets it), with the launcher variables LLaMA-Factory's own launcher
    reads; None in one process, or in a process torchrun started (LOCAL_RANK set)."""
    if environ.get("FORCE_TORCHRUN", "0").lower() not in ("1", "true", "y") or "LOCAL_RANK" in environ:
        return None
    # torch's own torchrun, of this Python (the one the train key's versions were read from)
    return [sys.executable, "-m", "torch.distributed.run",
            "--nnodes", environ.get("NNODES", "1"), "--node_rank", environ.get("NODE_RANK", "0"),
            "--nproc_per_node", environ.get("NPROC_PER_NODE", "1"),
            "--master_addr", environ.get("MASTER_ADDR", "127.0.0.1"),
            "--master_port", environ.get("MASTER_PORT", str(free_port)), "-m", MODULE, *argv]


def torchrun_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of the torchrun processes: LLaMA-Factory's launcher's DDP settings (unless
    OPTIM_TORCH=0), so a run with compiled layers differs from `llamafactory-cli train` only by them."""
    env = dict(environ)
    if environ.get("OPTIM_TORCH", "1").lower() in ("1", "true", "y"):
        env.update(PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True", TORCH_NCCL_AVOID_RECORD_STREAMS="1")
    return env


def decoder_layers(model) -> tuple[list[Any], set[str]]:
    """The model's decoder layers: the modules of the classes its `_no_split_modules` names (the
    blocks transformers keeps whole on one device), found through PEFT's wrappers."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    # by the class or a base class: FSDP2 turns each layer's class into an FSDP<Class> subclass of it
    return [m for m in model.modules() if any(c.__name__ in names for c in type(m).__mro__)], names


def compile_layers(model) -> str:
    """Compile each decoder layer in place; a line saying what was compiled. Shapes that change between
    batches make the layers dynamic after their first recompilation (torch.compile's default)."""
    import torch._dynamo

    if torch._dynamo.config.disable or os.environ.get("TORCHDYNAMO_DISABLE") == "1":   # how torch reads them
        raise ToolError("train.compile=layers: TorchDynamo is disabled in this environment (TORCHDYNAMO_DISABLE or "
                        "TORCH_COMPILE_DISABLE), so the layers would run uncompiled in an adapter whose key says they "
                        "were compiled. Unset it, "
                        "or build with train.compile=none.")
    layers, names = decoder_layers(model)
    if not layers:
        raise ToolError(f"train.compile=layers: {type(model).__name__} names no decoder layer class "
                        f"(_no_split_modules: {sorted(names) or 'none'}), so there is nothing to compile by layer. "
                        f"Use train.compile=model (the whole model) or train.compile=none.")
    for layer in layers:
        layer.compile()
    kinds = sorted({next(c.__name__ for c in type(m).__mro__ if c.__name__ in names) for m in layers})
    return (f"llmbuild: {len(layers)} decoder layers ({', '.join(kinds)}) "
            f"compiled with torch.compile; the first steps compile them")


def rounding() -> str:
    """How inductor rounds bf16 inside its kernels, as the training process's environment set it
    (facts/compile_modes.environment)."""
    from torch._inductor import config

    return "; they round to bf16 as eager PyTorch does" if config.emulate_precision_casts else \
        "; they round to bf16 once per fused kernel"


def apply_fused_loss(model_path: Path) -> str:
    """Liger's fused linear cross-entropy for the model's type, its other kernels off; a line saying so.
    Before the model is loaded: Liger replaces the model class's forward."""
    model_type = json.loads((model_path / "config.json").read_text(encoding="utf-8")).get("model_type")
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except ImportError as err:
        raise ToolError(f"train.liger_kernel needs liger-kernel ({err}): run the set-up command in README.md, or "
                        f"set train.liger_kernel=false.") from None
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
    accepted = inspect.signature(apply).parameters if apply else {}
    if "fused_linear_cross_entropy" not in accepted:
        return f"llmbuild: Liger has no fused linear cross-entropy for model type {model_type!r}; the loss is PyTorch's"
    # every kernel switch off (RMSNorm, SwiGLU, RoPE, a model's own, ...) but the fused loss
    apply(**{name: name == "fused_linear_cross_entropy" for name, parameter in accepted.items()
             if isinstance(parameter.default, bool)})
    return f"llmbuild: Liger's fused linear cross-entropy for {model_type} (its other kernels off)"


def train(yaml_path: Path, fused_loss: bool, overrides: list[str] = ()) -> None:
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    args = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    for setting in overrides:   # KEY=VALUE after the YAML replaces its value, as llamafactory-cli takes them
        key, _, value = setting.partition("=")
        args[key] = yaml.safe_load(value)
    if fused_loss:
        print(apply_fused_loss(Path(args["model_name_or_path"])), flush=True)

    low_precision = bool(args.get("bf16") or args.get("pure_bf16"))

    class CompileLayers(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            line = compile_layers(model) + (rounding() if low_precision else "")
            if state.is_world_process_zero:
                print(line, flush=True)

    run_exp(args=args, callbacks=[CompileLayers()])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("yaml", type=Path, help="LLaMA-Factory's training YAML (llamafactory.yaml)")
    parser.add_argument(FUSED_LOSS, action="store_true", help="Liger's fused linear cross-entropy only")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="settings that replace the YAML's (output_dir=...), as llamafactory-cli takes them")
    options = parser.parse_args(argv)
    if torchrun_command(argv, os.environ, 0) is not None:
        from llamafactory.extras.misc import find_available_port
        return subprocess.run(torchrun_command(argv, os.environ, find_available_port()), env=torchrun_env(os.environ),
                              check=False).returncode
    try:
        train(options.yaml, options.fused_loss, options.overrides)
    except ToolError as err:   # the line llmbuild's train stage reports (adapters/process.py, last_error)
        print(f"ToolError: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
