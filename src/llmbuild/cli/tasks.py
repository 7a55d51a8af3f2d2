"""A plan -> doit task dicts. Planning stays light: stage modules (torch, transformers,
LLaMA-Factory) are imported only inside actions, when a task really runs."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from functools import partial
from typing import Iterator

from doit.exceptions import TaskFailed
from omegaconf import OmegaConf, read_write

from .. import review
from ..errors import LlmbuildError
from ..plan.graph import Plan
from ..plan.stages import STAGES
from ..stages.context import StageContext
from ..store import Store
from . import locks
from .. import outputs as package


def tasks_for(plans: list[Plan]) -> Iterator[dict]:
    seen: set[str] = set()
    for stage, spec in STAGES.items():
        yield {"basename": stage, "name": None, "doc": spec.doc}
    yield {"basename": "package", "name": None, "doc": "Link every output of a variant under build/out/<variant>/"}
    for plan in plans:
        store = Store(plan.store)
        for slot, node in plan.nodes.items():
            if node.task_name in seen:  # shared by several variants of a sweep: one task
                continue
            seen.add(node.task_name)
            stage = node.stage
            yield {
                "basename": stage,
                "name": node.key[:8],
                "doc": f"{STAGES[stage].doc} [{plan.variant}{'' if slot == stage else ', ' + slot}]",
                "actions": [(run_stage, [plan, slot])],
                "task_dep": [plan.nodes[up].task_name for up in node.payload["upstream"]],
                "uptodate": [partial(store.is_complete, stage, node.key)],
                "clean": [(remove_artifact, [plan.store, stage, node.key])],
                "verbosity": 2,
            }
        yield {
            "basename": "package",
            "name": plan.variant,
            "doc": f"Link the outputs of {plan.variant} under {package.out_dir(plan)}",
            "actions": [(publish, [plan])],
            "task_dep": [node.task_name for node in plan.nodes.values()],
            "uptodate": [partial(package.is_current, plan)],
            "clean": [(package.remove, [plan])],
            "verbosity": 2,
        }


def publish(plan: Plan) -> None:
    """doit action: link the variant's outputs under a readable name (one process at a time)."""
    with locks.artifact(Store(plan.store), "package", plan.variant):
        if not package.is_current(plan):
            package.link_outputs(plan)


def remove_artifact(store: Path, stage: str, key: str) -> None:
    """doit clean: delete one artifact from the store."""
    Store(store).remove(stage, key)
    print(f"  removed {store / stage / key}")


def run_stage(plan: Plan, slot: str):
    """doit action: build one artifact; user errors end the task with their message only.

    Each artifact is built under a file lock, so two doit processes sharing a store (or `-n`
    workers) never build the same key at once; the second finds it complete and stops."""
    node = plan.nodes[slot]
    stage = node.stage
    store = Store(plan.store)
    inputs = {up: store.path(plan.nodes[up].stage, key) for up, key in node.payload["upstream"].items()}
    cfg = plan.composed.cfg
    if node.overrides:  # a node built with other values than the variant's (a quant of the eval ladder)
        cfg = copy.deepcopy(cfg)
        with read_write(cfg):
            for key, value in node.overrides:
                OmegaConf.update(cfg, key, value)
    manifest = {"key": node.key, "variant": plan.variant, **node.payload,
                "config": review.redact(node.payload["config"])}  # the key hashed the real values
    module = importlib.import_module(f"llmbuild.stages.{stage}")
    try:
        with locks.artifact(store, stage, node.key), locks.slots(store, stage, plan.composed.cfg):
            if store.is_complete(stage, node.key):
                print(f"  {stage} {node.key[:8]} was built meanwhile by another process")
                return None
            with store.building(stage, node.key, manifest) as out:
                ctx = StageContext(cfg=cfg, root=plan.root, key=node.key, inputs=inputs, out=out)
                module.run(ctx)
    except LlmbuildError as err:
        return TaskFailed(f"{stage}: {err}")
    return None
