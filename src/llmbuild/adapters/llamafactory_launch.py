"""`llamafactory-cli train` on several GPUs: the launcher's environment, the DeepSpeed or FSDP
config written into the train artifact, and the arguments of llamafactory.yaml that name it.

LLaMA-Factory's launcher (llamafactory/launcher.py) starts torchrun when FORCE_TORCHRUN is set,
with NPROC_PER_NODE processes per host and NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT from the
environment; every process runs the same YAML in the same folder, so the config file is named
relative to it and the artifact runs by hand unchanged. The strategies' settings are written from
the HF Trainer's DeepSpeed integration and FSDP arguments (transformers' training_args.py); "auto"
values are filled in by the Trainer from the YAML (batch size, accumulation, clipping, bf16/fp16).
`launch` chooses what runs the YAML (`llamafactory-cli train`, or llmbuild's launcher with compiled
decoder layers), with the variables and the "Run by hand" line that go with it.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import ToolError
from ..facts.compile_modes import LAYERS, MODES, NONE, ROUNDINGS, environment
from ..facts.distributed import DEEPSPEED_DISTRIBUTION, MULTI_NODE_ENV, NO_MULTICAST, Strategy
from ..facts.layout import LLAMAFACTORY_YAML
from ..facts.train_methods import fused_loss
from ..files.devices import first_visible_gpu, visible_gpus
from . import llamafactory_compiled

CLI_TRAIN = "llamafactory-cli train"


def deepspeed_config(zero_stage: int) -> dict[str, Any]:
    """DeepSpeed's JSON for ZeRO stage 2 or 3. The HF Trainer builds the optimizer and scheduler
    (llamafactory.yaml's optim and lr_scheduler_type), hence `zero_allow_untested_optimizer`."""
    zero: dict[str, Any] = {
        "stage": zero_stage,
        "overlap_comm": False,             # DeepSpeed's default: gradient buckets not doubled in memory
        "contiguous_gradients": True,      # gradients copied into one buffer as they are made: less fragmentation
        "reduce_bucket_size": "auto",      # the Trainer sets hidden_size^2
    }
    if zero_stage == 3:
        zero.update({
            "stage3_prefetch_bucket_size": "auto",          # 0.9 x hidden_size^2
            "stage3_param_persistence_threshold": "auto",   # 10 x hidden_size: small tensors stay whole
            # the adapter is saved as one file at the end (adapter_model.safetensors), not as shards
            "stage3_gather_16bit_weights_on_model_save": True,
        })
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": "auto"},
        # loss_scale 0: dynamic loss scaling, starting at 2^16 and halved on overflow
        "fp16": {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 16, "loss_scale_window": 1000,
                 "hysteresis": 2, "min_loss_scale": 1},
        "zero_optimization": zero,
    }


# the HF Trainer's `fsdp` argument: every weight, gradient and optimizer state split, each decoder
# layer a unit of its own (the model's _no_split_modules)
FSDP_OPTIONS = "full_shard auto_wrap"


def fsdp_config() -> dict[str, Any]:
    """The HF Trainer's `fsdp_config`. FSDP2: FSDP1 flattens each unit's weights into one tensor of
    one dtype and fails on LoRA's fp32 weights beside the 16-bit base ("Must flatten tensors with
    uniform dtype"); FSDP2 shards each weight on its own."""
    return {"fsdp_version": 2, "reshard_after_forward": True, "cpu_ram_efficient_loading": False}


def yaml_args(strategy: Strategy, devices: int) -> dict[str, Any]:
    """The lines llamafactory.yaml adds for `strategy` (none on one device)."""
    if devices == 1 or strategy.config_file is None:
        return {}
    if strategy.deepspeed:
        return {"deepspeed": strategy.config_file}
    return {"fsdp": FSDP_OPTIONS, "fsdp_config": strategy.config_file}


def write_config(strategy: Strategy, devices: int, folder: Path) -> Path | None:
    """The strategy's config file in the artifact, beside llamafactory.yaml (none on one device)."""
    if devices == 1 or strategy.config_file is None:
        return None
    body = deepspeed_config(strategy.zero_stage) if strategy.deepspeed else fsdp_config()
    path = folder / strategy.config_file
    path.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return path


def launch_env(strategy: Strategy, devices: int) -> dict[str, str]:
    """What the launcher needs beyond the YAML, as the run-by-hand line shows it. One device: none
    (the run keeps to one GPU through `run_env`)."""
    if devices == 1:
        return {}
    env = {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": str(devices)}
    if strategy.name == "fsdp":   # the adapter saved whole at the end; FSDP2 would save shards
        env["FSDP_STATE_DICT_TYPE"] = "FULL_STATE_DICT"
    return env


def run_env(strategy: Strategy, devices: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment llmbuild gives `llamafactory-cli train`: the launcher's (`launch_env`), and
    on one device only the first visible GPU when there are more (LLaMA-Factory's launcher starts
    torchrun on every GPU it sees unless told otherwise, and the key says one), and FORCE_TORCHRUN
    off in case the user's environment has it. NNODES and the other multi-host settings pass
    through from the user's environment; NVLink multicast is off (`no_multicast`)."""
    environ = os.environ if environ is None else environ
    env = launch_env(strategy, devices)
    if devices == 1:
        env["FORCE_TORCHRUN"] = "0"
        if visible_gpus(environ) > 1:
            env["CUDA_VISIBLE_DEVICES"] = first_visible_gpu(environ)
    return {**env, **no_multicast(environ)}


def no_multicast(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """NVLink multicast off (facts/distributed.NO_MULTICAST), each variable unless the user set it."""
    environ = os.environ if environ is None else environ
    return {name: value for name, value in NO_MULTICAST.items() if name not in environ}


def hand_command(strategy: Strategy, devices: int, program: str = CLI_TRAIN,
                 extra_env: Mapping[str, str] | None = None, output_dir: str | None = None) -> str:
    """The launcher command for the YAML's "Run by hand" line, run inside the artifact. `program`:
    what runs the YAML (llmbuild's launcher with compiled decoder layers, for train.compile=layers);
    `extra_env`: the training process's other variables (facts/compile_modes.environment);
    `output_dir`: the output folder it gives on the command line instead of the YAML's."""
    if devices == 1:   # one GPU even on a host with several
        env = {"CUDA_VISIBLE_DEVICES": "0", **(extra_env or {})}
        several = ""
    else:
        env = {**launch_env(strategy, devices), **NO_MULTICAST, **(extra_env or {})}
        several = f" (several hosts: set {', '.join(MULTI_NODE_ENV)} on each)"
    output = f" output_dir={output_dir}" if output_dir else ""
    return " ".join(f"{k}={v}" for k, v in env.items()) + f" {program} {LLAMAFACTORY_YAML}{output}{several}"


@dataclass(frozen=True)
class Launch:
    """How the train stage runs llamafactory.yaml."""

    program: list[str] | None   # what runs it: None for `llamafactory-cli train`
    hand: str                   # the same command run by hand inside the artifact (the YAML's header says it)
    env: dict[str, str]         # the launcher's variables (`run_env`) and the training process's (train.compile)
    notes: tuple[str, ...]      # what train.compile and train.liger_kernel do, for the log


def launch(strategy: Strategy, devices: int, compile_mode: str, compile_rounding: str, bf16: bool,
           liger_kernel: bool, method_name: str, environ: Mapping[str, str] | None = None,
           by_hand_output: str | None = None) -> Launch:
    """What runs the YAML for train.compile=`compile_mode` (with `compile_rounding`), train.bf16,
    train.liger_kernel and the training method `method_name` (train.stage), on `devices` GPUs with
    `strategy`: llmbuild's launcher with compiled decoder layers for train.compile=layers
    (llamafactory_compiled.py, Liger's fused loss only where the method's loss is next-token),
    else `llamafactory-cli train`."""
    notes = []
    if compile_mode != NONE:
        notes.append(f"train.compile={compile_mode}: {MODES[compile_mode]}; the first steps compile")
        if bf16:   # in fp32 nothing is rounded to bf16
            notes.append(f"train.compile_rounding={compile_rounding}: {ROUNDINGS[compile_rounding]}")
    program, by_hand = None, CLI_TRAIN
    if compile_mode == LAYERS:
        fused = fused_loss(liger_kernel, method_name)
        if liger_kernel and not fused:
            notes.append(f"train.liger_kernel: Liger's fused loss does not apply to {method_name} (it needs the "
                         f"logits); the compiled layers fuse the rest")
        program = llamafactory_compiled.program(fused)
        by_hand = " ".join(llamafactory_compiled.program(fused, python="python"))
    compiled = environment(compile_mode, compile_rounding)
    return Launch(program, hand_command(strategy, devices, by_hand, compiled, by_hand_output),
                  {**run_env(strategy, devices, environ), **compiled}, tuple(notes))


def multi_node(environ: Mapping[str, str] | None = None) -> int:
    """NNODES from the environment: the hosts one run spans (1 when unset)."""
    environ = os.environ if environ is None else environ
    value = environ.get("NNODES", "1").strip()
    if not value.isdigit() or int(value) < 1:
        raise ToolError(f"NNODES={value!r} in the environment: LLaMA-Factory's launcher needs a number of hosts "
                        f"(1 or more); unset it on one host.")
    return int(value)


def require_deepspeed(strategy: Strategy) -> None:
    """DeepSpeed is not one of llmbuild's dependencies (a source package, built at install, useful
    only with several GPUs): a strategy that needs it stops here with how to install it."""
    if strategy.deepspeed and not installed(DEEPSPEED_DISTRIBUTION):
        raise ToolError(f"train.distributed={strategy.name} needs DeepSpeed, which is not installed in this "
                        f"environment: run `pip install deepspeed` in it (or use train.distributed=fsdp or ddp).")


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
