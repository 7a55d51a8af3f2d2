"""A plan -> doit task dicts, and the train stages' checks run before any task. Planning stays
light: stage modules (torch, transformers, LLaMA-Factory) are imported only inside actions, when a
task really runs, and the checks only when a train stage is to run."""

from __future__ import annotations

import importlib
import os
from contextlib import nullcontext
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Iterator

from doit.exceptions import TaskFailed
from omegaconf import OmegaConf

from ..errors import LlmbuildError
from ..facts.secrets import TOOL_CREDENTIALS, redact
from ..files.model_path import HF_FOLDER, inspect_model_path
from ..files.templates import TemplateDir
from ..plan import outputs, pipeline
from ..plan.graph import Plan
from ..plan.keys import input_files
from ..plan.stages import STAGES
from ..plan.view import MISSING_KEY_ERRORS, node_config, stage_config, stage_inputs, uncovered
from ..stages.context import StageContext
from ..store import collect, locks, published
from ..store.artifacts import Store
from . import cluster, console, remote_cache
from .cluster_job import IN_JOB

# stages that saturate the machine: never more of them at once than this config key allows
SLOT_LIMITS = {"train": "jobs.train_at_once"}
PUBLISH = "package"   # the task that links a variant's outputs under <store>/out/<variant>/


def tasks_for(plans: list[Plan], verbose: bool = False) -> Iterator[dict]:
    """`verbose`: every tool's full output on the terminal (`doit build -v 2`)."""
    seen: set[str] = set()
    variants = frozenset(plan.variant for plan in plans)  # what a `doit clean` of this command line cleans
    for stage, spec in STAGES.items():
        yield {"basename": stage, "name": None, "doc": spec.doc}
    yield {"basename": PUBLISH, "name": None, "doc": "Link every output of a variant under build/out/<variant>/"}
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
                "title": partial(_title, STAGES[stage].doc + ("" if slot == stage else f" [{slot}]")),
                "actions": [(run_stage, [plan, slot, verbose])],
                "task_dep": [plan.nodes[up].task_name for up in node.inputs.values()],
                "uptodate": [partial(store.is_complete, stage, node.key)],
                "clean": [(remove_artifact, [plan.store, stage, node.key, variants])],
                "verbosity": 2,
            }
        yield {
            "basename": PUBLISH,
            "name": plan.variant,
            "doc": f"Link the outputs of {plan.variant} under {outputs.out_dir(plan)}",
            "actions": [(publish, [plan])],
            "task_dep": [node.task_name for node in plan.nodes.values()],
            "uptodate": [partial(is_published, plan)],
            "clean": [(published.remove, [outputs.out_dir(plan)])],
            "verbosity": 2,
        }


def is_published(plan: Plan) -> bool:
    return published.is_current(outputs.out_dir(plan), outputs.record(plan))


def publish(plan: Plan) -> None:
    """doit action: link the variant's outputs under a readable name (one process at a time)."""
    locks.building_in(Store(plan.store))
    with locks.artifact(Store(plan.store), PUBLISH, plan.variant):
        if not is_published(plan):
            published.publish(outputs.out_dir(plan), outputs.links(plan), outputs.config_text(plan),
                              outputs.record(plan))


def remove_artifact(store: Path, stage: str, key: str, cleaning: frozenset[str], dryrun: bool = False) -> None:
    """doit clean: delete one artifact from the store, unless a variant that is not being cleaned
    links it under <store>/out/ (it is shared: say so and keep it)."""
    path = store / stage / key
    if not path.exists():
        return
    users = collect.references(store, excluding=cleaning).get((stage, key))
    if users:
        print(f"  kept {path}: also used by {', '.join(users)} (see {store / 'out'})")
        return
    if not dryrun:
        Store(store).remove(stage, key)
    print(f"  {'would remove' if dryrun else 'removed'} {path}")


def _title(doc: str, task) -> str:
    return f"{task.name}  {doc}"


def run_stage(plan: Plan, slot: str, verbose: bool = False):
    """doit action: build one artifact; user errors end the task with their message only.

    The stage gets exactly what its key covers (plan/view.py). Each artifact is built under a file
    lock, so two doit processes sharing a store (or `-n` workers) never build the same key at once;
    the second finds it complete and stops."""
    node = plan.nodes[slot]
    stage = node.stage
    store = Store(plan.store)
    # the key hashed the real values; the manifest shows them masked
    record: dict = {}   # what the stage chose (train: the batch and packing), filled while it runs
    manifest = {"key": node.key, **node.payload, "config": redact(node.payload["config"]), "slot": slot,
                "sources": node.inputs, "record": record}
    locks.building_in(store)   # no doit gc on this store until the command ends (it links what it built then)
    try:
        with locks.artifact(store, stage, node.key):
            if store.is_complete(stage, node.key):
                print(f"  {stage} {node.key[:8]} was built meanwhile by another process")
                return None
            refused = cluster.refusal(stage, node.key)   # a cluster's job builds it, never this command
            if refused:
                return TaskFailed(f"{stage}: {refused}")
            if remote_cache.take(plan, stage, node.key):
                return None
            module = importlib.import_module(f"llmbuild.stages.{stage}")   # torch and the tools, when it builds
            with _slot(store, stage, plan), store.building(stage, node.key, manifest) as out:
                with console.quiet_libraries(out / console.STAGE_LOG, enabled=not verbose) as terminal:
                    try:
                        module.run(replace(stage_context(plan, slot, out), terminal=terminal, verbose=verbose,
                                           record=record))
                    except MISSING_KEY_ERRORS as err:
                        raise uncovered(stage, err) from None
            remote_cache.send(plan, stage, node.key)
    except LlmbuildError as err:
        return TaskFailed(f"{stage}: {err}")
    except KeyboardInterrupt:
        resume = store.resume_path(stage, node.key)
        kept = (f"its checkpoints are kept in {resume}, and the same command goes on from the newest"
                if resume.is_dir() and any(resume.rglob("trainer_state.json")) else
                f"nothing of {stage} {node.key[:8]} was kept. Run the same command to go on")
        return TaskFailed(f"{stage}: interrupted (Ctrl-C); {kept}: finished artifacts are reused")
    return None


def stage_context(plan: Plan, slot: str, out: Path) -> StageContext:
    """What the stage of `slot` runs with: its config view, its upstream artifacts, its declared
    templates and outside files, and `out` to build into."""
    node = plan.nodes[slot]
    given = stage_inputs(plan, slot)
    store = Store(plan.store)
    inputs = {name: pipeline.model_input(name, plan.nodes[up].stage, store.path(plan.nodes[up].stage, node.payload[
        "upstream"][name])) for name, up in node.inputs.items()}
    return StageContext(cfg=given.cfg, key=node.key, inputs=inputs, out=out, files=given.files,
                        templates=TemplateDir(plan.root, given.templates), credentials=credentials(plan),
                        project=plan.root, resume=store.resume_path(node.stage, node.key))


def check_before_building(plans: list[Plan]) -> None:
    """The train stage's checks (stages/preflight.py) for every train node not built yet whose
    model is on disk already, with the config view the stage would get: a build they refuse fails
    before any stage runs, with the stage's message. A model built during the run (a GGUF imported,
    a hub download, an earlier training stage's merge) is checked by the train stage, first thing."""
    checked: set[tuple[str, str]] = set()
    for plan in plans:
        store = Store(plan.store)
        for slot, node in plan.nodes.items():
            if node.stage != "train" or store.is_complete(node.stage, node.key):
                continue
            base = _model_on_disk(plan, node.inputs["base"], store)
            if base is None:
                continue
            cfg = stage_config(plan, slot)
            seen = (str(base), OmegaConf.to_yaml(cfg))   # variants of a sweep that share the node and the checks
            if seen in checked:
                continue
            checked.add(seen)
            # imported here: the checks read the model's files, only when a train stage is to run
            from ..stages import preflight

            try:
                preflight.check_before_training(cfg, base)
            except MISSING_KEY_ERRORS as err:
                raise uncovered(node.stage, err) from None
            except LlmbuildError as err:   # said as the stage says it when it runs
                where = slot if len(plans) == 1 else f"{slot} [{plan.variant}]"
                raise type(err)(f"{where}: {err}") from None


def _model_on_disk(plan: Plan, slot: str, store: Store) -> Path | None:
    """The HF folder that the artifact of `slot` gives a training stage, if it is there before
    anything runs: the artifact when it is built, or for the base stage, a model.path that names an
    HF folder (the stage links its files)."""
    node = plan.nodes[slot]
    if store.is_complete(node.stage, node.key):
        return pipeline.model_input("base", node.stage, store.path(node.stage, node.key))
    model = input_files(node.stage, node_config(plan, slot), plan.root).get("model")
    if model is None:
        return None
    source = inspect_model_path(model)
    return source.path if source.kind == HF_FOLDER and source.problem is None else None


def credentials(plan: Plan) -> dict[str, str]:
    """The credentials given as train.extra (facts/secrets.py), as the environment variables the
    tools read: they reach the tool, never a key, a file or the terminal."""
    extra = plan.composed.cfg.train.extra or {}
    return {TOOL_CREDENTIALS[k]: str(v) for k, v in extra.items() if k in TOOL_CREDENTIALS and v not in (None, "")}


def _slot(store: Store, stage: str, plan: Plan):
    setting = SLOT_LIMITS.get(stage)
    if setting is None or os.environ.get(IN_JOB):   # a cluster's scheduler placed the job on its devices
        return nullcontext()
    return locks.one_of(store, stage, OmegaConf.select(plan.composed.cfg, setting), setting)
