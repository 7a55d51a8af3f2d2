"""Training stages as a pipeline: `pipeline.<name>` stages run in order before the one in
dataset/lora/train, each training on the merged model of the one before it. Each has its own data,
train and merge nodes, keyed by its own settings and everything upstream of it, so that a change
to one stage rebuilds that stage and what follows, never the stages before it. Pure."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..facts import layout

# the stages of the build graph that each training stage of a pipeline has of its own
STEP_STAGES = ("data", "train", "merge")
STEP_GROUPS = ("dataset", "lora", "train")   # the config groups each training stage has of its own


@dataclass(frozen=True)
class Step:
    name: str
    cfg: DictConfig          # the variant's config with this stage's dataset, lora and train
    plain: dict[str, Any]    # the same as a dict


def earlier_steps(cfg: DictConfig, plain: dict[str, Any]) -> list[Step]:
    """The pipeline's stages before the last one, in order."""
    steps = []
    for name, step in (cfg.pipeline or {}).items():
        mixed = copy.deepcopy(cfg)
        OmegaConf.set_readonly(mixed, False)
        for group in STEP_GROUPS:
            mixed[group] = step[group]
        OmegaConf.set_readonly(mixed, True)
        steps.append(Step(name, mixed, {**plain, **{g: plain["pipeline"][name][g] for g in STEP_GROUPS}}))
    return steps


def last_name(cfg: DictConfig) -> str:
    """The name of the last training stage: its method (train.stage)."""
    return cfg.train.stage


def slot(stage: str, step: str) -> str:
    """`train@sft`: the plan slot of a stage of the pipeline's training stage `step`."""
    return f"{stage}@{step}"


def model_input(name: str, stage: str, artifact: Path) -> Path:
    """Where a stage finds its input `name` in the artifact of `stage`: a stage that trains on a
    model (input "base") finds an earlier training stage's model in its merge artifact."""
    return artifact / layout.MERGED if name == "base" and stage == "merge" else artifact
