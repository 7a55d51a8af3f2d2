"""How long `doit plan` says a stale stage will take: the time of the closest earlier build of that
stage (plan/explain.py finds it), scaled by the work, and whether the training can run here at all.

The work of a stage that runs a model is its parameters (from the sizing model's shape of each
build's model: the config.json of the model, or of the earlier build's base or merged artifact);
training's is parameters x tokens (steps x effective batch x train.cutoff_len). Stages that only
write text (data, ollama, vllm, report) take about as long whatever the model. Where either side
of the ratio is not known, the estimate is "unknown": a 135M demo's minutes say nothing of a 7B model
trained on data that is not read yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..facts import layout
from ..facts.layout import stage_of
from ..files.devices import visible_gpus
from ..plan import outputs
from ..plan.explain import StageStatus
from ..plan.graph import Plan
from ..sizing.choice import configured_setup, trainable_parameters
from ..sizing.params import parameter_count
from ..sizing.shape import find_shape, from_hf_config
from ..sizing.train_memory import GIB, train_memory
from ..store.artifacts import read_manifest

SAME_WORK = ("data", "ollama", "vllm", "report")   # text written from small inputs


@dataclass(frozen=True)
class Estimate:
    seconds: float | None   # None: no basis
    basis: str              # why this number, for people ("" when it is the earlier build's own time)


def estimate(plan: Plan, status: StageStatus) -> Estimate:
    stage = stage_of(status.stage)
    if status.baseline is None or status.earlier_seconds is None:
        return Estimate(None, f"no earlier {stage} build to time it by")
    seconds = float(status.earlier_seconds)
    if stage in SAME_WORK:
        return Estimate(seconds, "")
    store = plan.store
    before_params = _parameters_of_build(store, status.baseline)
    now_params = _planned_parameters(plan)
    if before_params is None or now_params is None:
        return Estimate(None, "the model's size is not known" if now_params is None
                        else "the earlier build's model size is not known")
    ratio = now_params / before_params
    if stage == "train":
        before_tokens = _train_tokens(status.baseline["config"].get("train", {}),
                                      _samples_of(store, status.baseline))
        now_tokens = _train_tokens(_train_settings(plan, status.stage), _planned_samples(plan, status.stage))
        if before_tokens is None or now_tokens is None:
            return Estimate(None, "how many tokens it trains on is not known until the data stage has run")
        ratio *= now_tokens / before_tokens
    if math.isclose(ratio, 1.0, rel_tol=0.05):
        return Estimate(seconds, "")
    return Estimate(seconds * ratio, f"{_count(before_params)}-parameter build x{ratio:.3g} the work")


def cannot_run_here(plan: Plan) -> str | None:
    """Why the planned training cannot run on this machine, or None: no GPU for Liger's kernels, or a
    memory estimate above this machine's memory (the GPU's when train.gpu_memory_gib says it, else RAM
    without a GPU). Only said when the train stage is stale."""
    cfg = plan.composed.cfg
    if "train" not in plan.nodes:
        return None
    gpus = visible_gpus()
    if gpus == 0 and cfg.train.liger_kernel:
        return "train.liger_kernel needs a CUDA GPU and this machine shows none"
    try:
        shape = find_shape(cfg.model, plan.root, _base_dir(plan)).shape
        modules, trainable = trainable_parameters(cfg, shape)
    except ConfigError:   # the build says what is wrong with the model or lora.target
        return None
    need = train_memory(shape, modules, trainable, configured_setup(cfg)).total
    if gpus == 0:
        if not cfg.train.bf16:
            need += 2 * parameter_count(shape).total   # the estimate's weights are 16-bit; the CPU trains in fp32
        have, where = _ram_bytes(), "of memory and no GPU"
    elif cfg.train.gpu_memory_gib:
        have, where = cfg.train.gpu_memory_gib * GIB, "per GPU (train.gpu_memory_gib)"
    else:
        return None
    if have is None or need <= have:
        return None
    return (f"training {_count(parameter_count(shape).total)} parameters needs about {need / GIB:.0f} GiB "
            f"and this machine has {have / GIB:.0f} GiB {where}")


def _count(n: float) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _base_dir(plan: Plan) -> Path | None:
    return outputs.artifact(plan, "base") if "base" in plan.nodes else None


def _planned_parameters(plan: Plan) -> int | None:
    try:
        found = find_shape(plan.composed.cfg.model, plan.root, _base_dir(plan))
    except ConfigError:
        return None
    return found.file_parameters or parameter_count(found.shape).total


def _parameters_of_build(store: Path, manifest: dict[str, Any], depth: int = 0) -> int | None:
    """The parameters of the model an earlier build ran: its base or merged artifact's config.json,
    found through its upstream artifacts."""
    stage = stage_of(manifest.get("slot", manifest.get("stage", "")))
    folder = store / stage / manifest.get("key", "")
    for config in (folder / "config.json", folder / layout.MERGED / "config.json"):
        if config.is_file():
            try:
                return parameter_count(from_hf_config(config)).total
            except ConfigError:
                return None
    if depth > 6:
        return None
    sources = manifest.get("sources", {})
    for name, key in manifest.get("upstream", {}).items():
        up = read_manifest(store / stage_of(sources.get(name, name)) / key)
        found = up and _parameters_of_build(store, up, depth + 1)
        if found:
            return found
    return None


def _train_settings(plan: Plan, slot: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    node = plan.nodes[slot]
    cfg = node.cfg if node.cfg is not None else plan.composed.cfg
    return OmegaConf.to_container(cfg.train, resolve=True)


def _train_tokens(train: dict[str, Any], samples: int | None) -> float | None:
    batch = train.get("per_device_train_batch_size", 1) * train.get("gradient_accumulation_steps", 1)
    if train.get("max_steps", -1) and train.get("max_steps", -1) > 0:
        steps = train["max_steps"]
    elif samples is None:
        return None
    else:
        steps = math.ceil(samples / batch) * float(train.get("num_train_epochs", 1.0))
    return steps * batch * train.get("cutoff_len", 1024)


def _samples_of(store: Path, train_manifest: dict[str, Any]) -> int | None:
    key = train_manifest.get("upstream", {}).get("data")
    return _rows(store / "data" / key / layout.TRAIN_ROWS) if key else None


def _planned_samples(plan: Plan, slot: str) -> int | None:
    node = plan.nodes[slot]
    data = node.inputs.get("data")
    if data is None:
        return None
    return _rows(outputs.artifact(plan, data) / layout.TRAIN_ROWS)


def _rows(path: Path) -> int | None:
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return None
