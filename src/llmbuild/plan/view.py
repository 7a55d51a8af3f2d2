"""What a stage runs with: exactly what its key covers.

A stage's config is a read-only DictConfig holding the values its key hashed (the node's config
slice, under the same dotted names), the values an upstream key covers (`upstream_reads`) and the
values that change how, never what, it builds (`uses`) and later stages' values it checks
(`checks`); nothing else is in it, so a stage that
reads another key fails with `UncoveredRead` instead of building an artifact whose key does not
cover what it contains. Its template files are the ones the key hashed, and its outside files
(model, dataset) the ones whose digests the key holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from ..errors import StageError
from .graph import Plan
from .keys import input_files
from .stages import STAGES

# what OmegaConf raises when a struct-mode config lacks the key that is read
MISSING_KEY_ERRORS = (ConfigAttributeError, ConfigKeyError)


class UncoveredRead(StageError):
    """A stage read a config key that its key does not cover (a bug in the stage's spec)."""


@dataclass(frozen=True)
class StageInputs:
    cfg: DictConfig               # the stage's view of the config
    files: dict[str, Path]        # outside files by name (keys.input_files)
    templates: tuple[str, ...]    # files under templates/ the stage may read


def stage_config(plan: Plan, slot: str) -> DictConfig:
    node = plan.nodes[slot]
    tree: dict[str, Any] = {}
    for dotted, value in node.payload["config"].items():
        _put(tree, dotted, value)
    overrides = dict(node.overrides)
    spec = STAGES[node.stage]
    for dotted in (*spec.upstream_reads, *spec.uses, *spec.checks):
        value = overrides[dotted] if dotted in overrides else OmegaConf.select(node_config(plan, slot), dotted)
        _put(tree, dotted, OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
    cfg = OmegaConf.create(tree)
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def node_config(plan: Plan, slot: str) -> DictConfig:
    """The config a node was keyed with: the variant's, or its pipeline stage's."""
    node = plan.nodes[slot]
    return node.cfg if node.cfg is not None else plan.composed.cfg


def stage_inputs(plan: Plan, slot: str) -> StageInputs:
    node = plan.nodes[slot]
    return StageInputs(stage_config(plan, slot), input_files(node.stage, node_config(plan, slot), plan.root),
                       tuple(node.payload["templates"]))


def uncovered(stage: str, err: Exception) -> UncoveredRead:
    """The message for a read of a key that is not in the stage's view."""
    key = getattr(err, "full_key", None) or str(err)
    return UncoveredRead(
        f"the {stage} stage read the config key '{key}', which its key does not cover. Add it to "
        f"StageSpec('{stage}').reads in src/llmbuild/plan/stages.py (or to `uses`, if it cannot change "
        f"the artifact), so that a change to it rebuilds this stage")


def _put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        node[leaf].update(value)
    else:
        node[leaf] = value
