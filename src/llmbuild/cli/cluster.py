"""A build or sweep on a cluster (launcher=slurm or submitit_local): each stale node of the plans
whose stage takes minutes (plan/stages.py: `job`) becomes one job, with `afterok` dependencies on
its inputs' jobs, so no job holds a GPU while it waits; nodes whose keys coincide across variants are
one job. A stage that takes seconds runs here: before the jobs when a job needs it and its inputs are
built, else after them, as doit's own task. Jobs build with llmbuild's own code against the same
store (cli/cluster_job.py).

A command submits nothing for what is built or being built (the store's job records say which job
builds what): running it again is how one collects. It waits and shows progress (launcher.wait), or
returns once submitted. A job that fails is reported with its log; what does not depend on it goes on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from omegaconf import OmegaConf

from ..adapters import cluster_jobs
from ..errors import ConfigError, LlmbuildError
from ..facts.launchers import LOCAL, SLURM
from ..facts.secrets import is_secret
from ..plan.graph import Node, Plan
from ..plan.stages import STAGES
from ..store import jobs, locks
from ..store.artifacts import Store
from . import remote_cache
from .cluster_job import NodeJob

# launcher option -> submitit's executor
_EXECUTORS = {SLURM: cluster_jobs.SLURM, "submitit_local": cluster_jobs.LOCAL}


@dataclass
class _Tracked:
    plan: Plan
    slot: str
    node: Node
    record: jobs.JobRecord
    submitted: bool = False   # by this command (else: found queued or running)


@dataclass
class Launch:
    active: bool = False
    failed: dict[tuple[str, str], str] = field(default_factory=dict)   # (stage, key) -> why it was not built


_launch = Launch()


def reset() -> None:
    global _launch
    _launch = Launch()


def refusal(stage: str, key: str) -> str | None:
    """Why this command must not build a job stage's node here (its job failed, or was not run), or None."""
    if not _launch.active or not STAGES[stage].job:
        return None
    return _launch.failed.get((stage, key), f"{stage} {key[:8]} was not built by a job; run the command again to "
                                            f"submit it")


def where(plan: Plan, stage: str, key: str) -> str | None:
    """`queued as slurm job 17 (Priority)` or `running as slurm job 17 on node-3` for an artifact a job is
    building now (from the store's job records: any host's), else None."""
    live = _live(Store(plan.store), stage, key)
    if live is None:
        return None
    record, state, place = live
    if state == cluster_jobs.PENDING:
        return f"queued as {record.cluster} job {record.job_id}" + (f" ({place})" if place else "")
    return f"running as {record.cluster} job {record.job_id}" + (f" on {place}" if place else "")


def is_cluster(plans: list[Plan]) -> bool:
    return bool(plans) and plans[0].composed.cfg.launcher.name != LOCAL


def launch(plans: list[Plan]) -> bool:
    """Submit the plans' stale job nodes and, with launcher.wait, wait for them. True: nothing is
    pending or running any more (the command goes on to the stages that run here); False: jobs are
    still queued or running (launcher.wait=false)."""
    _launch.active = True
    settings = plans[0].composed.cfg.launcher
    if any(plan.composed.cfg.launcher != settings for plan in plans):
        raise ConfigError("a sweep's variants must share the launcher settings: sweep no launcher.* key")
    cluster = _EXECUTORS[settings.name]
    problem = cluster_jobs.available(cluster)
    if problem:
        raise ConfigError(f"launcher={settings.name}: {problem}. Run the command on the cluster's login node, or "
                          f"use launcher=local (this machine) or launcher=submitit_local")
    _check(plans, settings)
    while True:
        tracked, submitted = _submit_ready(plans, cluster, settings)
        print(f"  {settings.name}: {submitted} job(s) submitted, {len(tracked) - submitted} already queued or "
              f"running (logs in {jobs.submitit_folder(Store(plans[0].store))})", flush=True)
        if not tracked:
            return True
        if not settings.wait:
            for item in tracked.values():
                print(f"    {item.slot} {item.node.key[:8]} [{item.plan.variant}]: job {item.record.job_id}",
                      flush=True)
            return False
        _wait(tracked, settings.poll_s)
        if cluster != cluster_jobs.LOCAL or not _more_to_submit(plans):
            return True


def _submit_ready(plans: list[Plan], cluster: str, settings) -> tuple[dict[tuple[str, str], _Tracked], int]:
    """Submit every stale job node that can be: on Slurm all of them, each after its inputs' jobs; with
    the local executor (no dependencies) those whose inputs are built. A stage that takes seconds and
    that a job needs is built here when its inputs are, else it is a job too."""
    tracked: dict[tuple[str, str], _Tracked] = {}
    submitted = 0
    for plan, slot, node in distinct_nodes(plans):
        store = Store(plan.store)
        if store.is_complete(node.stage, node.key) or (node.stage, node.key) in tracked or \
                (node.stage, node.key) in _launch.failed or _taken_from_cache(plan, node):
            continue
        pending = [plan.nodes[up] for up in node.inputs.values()
                   if not store.is_complete(plan.nodes[up].stage, plan.nodes[up].key)]
        if not STAGES[node.stage].job:
            if not pending:
                if any(_needed_by_a_job(plan, slot)):
                    _build_here(plan, slot)
                continue   # else doit runs it after the jobs
            if not any(_needed_by_a_job(plan, slot)):
                continue
        live = _live(store, node.stage, node.key)
        if live is not None:
            tracked[(node.stage, node.key)] = _Tracked(plan, slot, node, live[0])   # being built: submit nothing
            continue
        after = [tracked[(up.stage, up.key)].record.job_id for up in pending if (up.stage, up.key) in tracked]
        if len(after) < len(pending) or (after and cluster == cluster_jobs.LOCAL):
            continue   # an input nothing builds yet (its job failed; or the local executor's next wave)
        try:
            record = _submit(plan, slot, node, cluster, settings, after)
        except ConfigError:
            _withdraw(cluster, [item for item in tracked.values() if item.submitted])
            raise
        tracked[(node.stage, node.key)] = _Tracked(plan, slot, node, record, submitted=True)
        submitted += 1
    return tracked, submitted


def _withdraw(cluster: str, items: list[_Tracked]) -> None:
    """The jobs this command submitted before the scheduler refused one: cancelled, so that nothing of a
    half-submitted sweep waits in the queue (their stages build when the command runs again)."""
    if not items:
        return
    cluster_jobs.cancel(cluster, [item.record.job_id for item in items])
    for item in items:
        jobs.forget(Store(item.plan.store), item.node.stage, item.node.key)
    print(f"  cancelled the {len(items)} job(s) submitted before the refusal: "
          f"{', '.join(item.record.job_id for item in items)}", flush=True)


def _more_to_submit(plans: list[Plan]) -> bool:
    """The local executor submits in waves: whether a job node is stale whose inputs are all built now."""
    for plan, _slot, node in distinct_nodes(plans):
        store = Store(plan.store)
        if STAGES[node.stage].job and not store.is_complete(node.stage, node.key) and \
                (node.stage, node.key) not in _launch.failed and \
                all(store.is_complete(plan.nodes[up].stage, plan.nodes[up].key) for up in node.inputs.values()):
            return True
    return False


def _check(plans: list[Plan], settings) -> None:
    for stage in settings.stages or {}:
        if stage not in STAGES:
            raise ConfigError(f"launcher.stages.{stage}: no such stage. Stages that run as jobs: "
                              f"{', '.join(s for s, spec in STAGES.items() if spec.job)}")
    for plan in plans:
        for item in plan.composed.overrides:
            if is_secret(item.lstrip("+~").split("=", 1)[0]):
                raise ConfigError(f"{item.split('=', 1)[0]}: a credential on the command line cannot reach a cluster "
                                  f"job without being written to its files. Set it in the environment instead "
                                  f"(HF_TOKEN, ...): jobs get the environment they were submitted from")


def distinct_nodes(plans: list[Plan]):
    """(plan, slot, node) of every artifact of the plans, each once (variants of a sweep share nodes)."""
    seen = set()
    for plan in plans:
        for slot, node in plan.nodes.items():
            if node.task_name not in seen:
                seen.add(node.task_name)
                yield plan, slot, node


def _live(store: Store, stage: str, key: str) -> tuple[jobs.JobRecord, str, str] | None:
    """The job record of an artifact a job is building now (pending or running), with its state and place."""
    record = jobs.read(store, stage, key)
    if record is None:
        return None
    state, place = cluster_jobs.state(record.cluster, record.job_id)
    return None if state == cluster_jobs.ENDED else (record, state, place)


def _needed_by_a_job(plan: Plan, slot: str):
    """The job nodes of the plan that take `slot`'s artifact, directly or through others."""
    for other_slot, other in plan.nodes.items():
        if STAGES[other.stage].job and slot in _upstream(plan, other_slot):
            yield other_slot


def _upstream(plan: Plan, slot: str) -> set[str]:
    found, todo = set(), list(plan.nodes[slot].inputs.values())
    while todo:
        up = todo.pop()
        if up not in found:
            found.add(up)
            todo.extend(plan.nodes[up].inputs.values())
    return found


def _taken_from_cache(plan: Plan, node: Node) -> bool:
    store = Store(plan.store)
    if remote_cache.objects(plan) is None:
        return False
    locks.building_in(store)
    with locks.artifact(store, node.stage, node.key):
        return store.is_complete(node.stage, node.key) or remote_cache.take(plan, node.stage, node.key)


def _build_here(plan: Plan, slot: str) -> None:
    """A stage that takes seconds, which a job needs: built now, by this command."""
    from doit.exceptions import TaskFailed

    from .tasks import run_stage

    node = plan.nodes[slot]
    print(f".  {node.stage}:{node.key[:8]}  {STAGES[node.stage].doc} (here, before the jobs that need it)", flush=True)
    failed = run_stage(plan, slot)
    if isinstance(failed, TaskFailed):
        raise LlmbuildError(failed.message)


def _resources(settings, stage: str) -> dict:
    values = OmegaConf.to_container(settings, resolve=True)
    general = {name: values[name] for name in cluster_jobs.RESOURCES}
    return {**general, **(values["stages"].get(stage) or {})}


def _submit(plan: Plan, slot: str, node: Node, cluster: str, settings, after: list[str]) -> jobs.JobRecord:
    store = Store(plan.store)
    work = NodeJob(plan.root, plan.composed.overrides, slot, node.key)
    try:
        done = cluster_jobs.submit(cluster, jobs.submitit_folder(store), f"llmbuild-{node.stage}-{node.key[:8]}", work,
                                   _resources(settings, node.stage), after)
    except LlmbuildError as err:
        raise ConfigError(_translated(str(err), settings, node.stage)) from None
    print(f"  {slot} {node.key[:8]} [{plan.variant}]: job {done.job_id}"
          + (f" (after {', '.join(after)})" if after else ""), flush=True)
    return jobs.record(store, node.stage, node.key, cluster, done.job_id, done.log, plan.variant)


def _translated(said: str, settings, stage: str) -> str:
    """Slurm's refusal, with the launcher setting that caused it (the stage's own where it sets one)."""
    lowered = said.lower()
    for words, name in (("partition", "partition"), ("account", "account"), ("qos", "qos"),
                        ("constraint", "constraint"), ("feature", "constraint"), ("memory", "mem_gb"),
                        ("gres", "gpus_per_node"), ("gpu", "gpus_per_node"), ("time limit", "timeout_min")):
        if words in lowered:
            own = (settings.stages or {}).get(stage) or {}
            setting = f"launcher.stages.{stage}.{name}" if name in own else f"launcher.{name}"
            value = own[name] if name in own else settings[name]
            return f"{setting}={value}: {said}. Set {setting} to what this cluster has (sinfo lists its partitions)"
    return said


def _wait(tracked: dict[tuple[str, str], _Tracked], poll_s: float) -> None:
    """Until no job is pending or running: a line whenever the counts change, and each failure with its log."""
    shown = None
    while True:
        counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        where = []
        for key, item in tracked.items():
            store = Store(item.plan.store)
            if store.is_complete(item.node.stage, item.node.key):
                counts["done"] += 1
                continue
            if key in _launch.failed:
                counts["failed"] += 1
                continue
            state, place = cluster_jobs.state(item.record.cluster, item.record.job_id)
            if state == cluster_jobs.ENDED:
                _launch.failed[key] = _why(tracked, item)
                print(f"  {item.slot} {item.node.key[:8]} [{item.plan.variant}]: {_launch.failed[key]}", flush=True)
                counts["failed"] += 1
            else:
                counts[state] += 1
                if state == cluster_jobs.RUNNING:
                    where.append(f"{item.slot} on {place}")
        line = ", ".join(f"{n} {state}" for state, n in counts.items())
        if line != shown:
            print(f"  jobs: {line}" + (f" ({'; '.join(where)})" if where else ""), flush=True)
            shown = line
        if counts["pending"] + counts["running"] == 0:
            return
        time.sleep(poll_s)


def _why(tracked: dict[tuple[str, str], _Tracked], item: _Tracked) -> str:
    """Why a job ended without its artifact: its error, or an input's failure, with its log."""
    for up_slot in item.node.inputs.values():
        up = item.plan.nodes[up_slot]
        if (up.stage, up.key) in _launch.failed:
            return f"not built: its input {up_slot} {up.key[:8]} failed"
    outcome = cluster_jobs.outcome(jobs.submitit_folder(Store(item.plan.store)), item.record.job_id)
    if outcome is not None and not outcome[0]:
        return f"job {item.record.job_id} failed: {outcome[1]}; its log: {item.record.log}"
    return (f"job {item.record.job_id} ended without building it (cancelled, out of time or memory, or its node "
            f"was lost); its log: {item.record.log}")
