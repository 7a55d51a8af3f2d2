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

MODULE = "llmbuild.adapters.llamafactory_compiled"
FUSED_LOSS = "--fused-loss"


def program(fused_loss: bool, python: str = sys.executable) -> list[str]:
    """The command line (without the YAML) that trains with compiled decoder layers."""
    return [python, "-m", MODULE, *([FUSED_LOSS] if fused_loss else [])]


def torchrun_command(argv: list[str], environ: Mapping[str, str], free_port: int) -> list[str] | None:
    """torchrun on this module for several GPUs (FORCE_TORCHRUN=1, as llmbuild's launch environment
    sets it), with the launcher variables LLaMA-Factory's own launcher reads; None in one process, or
    in a process torchrun started (LOCAL_RANK set)."""
    if environ.get("FORCE_TORCHRUN", "0").lower() not in ("1", "true", "y") or "LOCAL_RANK" in environ:
        return None
    return ["torchrun", "--nnodes", environ.get("NNODES", "1"), "--node_rank", environ.get("NODE_RANK", "0"),
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
    return [m for m in model.modules() if type(m).__name__ in names], names


def compile_layers(model) -> str:
    """Compile each decoder layer in place; a line saying what was compiled. Shapes that change between
    batches make the layers dynamic after their first recompilation (torch.compile's default)."""
    layers, names = decoder_layers(model)
    if not layers:
        raise SystemExit(f"train.compile=layers: {type(model).__name__} names no decoder layer class "
                         f"(_no_split_modules: {sorted(names) or 'none'}), so there is nothing to compile by layer. "
                         f"Use train.compile=model (the whole model) or train.compile=none.")
    for layer in layers:
        layer.compile()
    return (f"llmbuild: {len(layers)} decoder layers ({', '.join(sorted({type(m).__name__ for m in layers}))}) "
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
        raise SystemExit(f"train.liger_kernel needs liger-kernel and a CUDA GPU ({err}); set "
                         f"train.liger_kernel=false on this machine.") from None
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
    if apply is None:
        return f"llmbuild: Liger has no kernels for model type {model_type!r}; the loss is PyTorch's"
    wanted = {"fused_linear_cross_entropy": True, "cross_entropy": False, "rms_norm": False, "swiglu": False,
              "rope": False, "geglu": False, "layer_norm": False}
    accepted = inspect.signature(apply).parameters
    apply(**{name: value for name, value in wanted.items() if name in accepted})
    return f"llmbuild: Liger's fused linear cross-entropy for {model_type} (its other kernels off)"


def train(yaml_path: Path, fused_loss: bool) -> None:
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    args = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    if fused_loss:
        print(apply_fused_loss(Path(args["model_name_or_path"])), flush=True)

    class CompileLayers(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            line = compile_layers(model) + rounding()
            if state.is_world_process_zero:
                print(line, flush=True)

    run_exp(args=args, callbacks=[CompileLayers()])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n\n")[0])
    parser.add_argument("yaml", type=Path, help="LLaMA-Factory's training YAML (llamafactory.yaml)")
    parser.add_argument(FUSED_LOSS, action="store_true", help="Liger's fused linear cross-entropy only")
    options = parser.parse_args(argv)
    if torchrun_command(argv, os.environ, 0) is not None:
        from llamafactory.extras.misc import find_available_port
        return subprocess.run(torchrun_command(argv, os.environ, find_available_port()), env=torchrun_env(os.environ),
                              check=False).returncode
    train(options.yaml, options.fused_loss)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
