"""The launcher's bookkeeping without a cluster: what a failed job means for the jobs after it and for
the stages this command would build, and where `doit plan` says a job is (the queue faked; the real
one-node Slurm cluster is tests/test_cluster.py)."""

from __future__ import annotations

from llmbuild.adapters import cluster_jobs
from llmbuild.cli import cluster
from llmbuild.store import jobs
from llmbuild.store.artifacts import Store


def test_a_failed_job_is_reported_with_its_log_and_what_needed_it_is_not_built_here(plan_for, monkeypatch, tmp_path):
    plan = plan_for("launcher=slurm")
    store = Store(plan.store)
    tracked = {}
    for number, slot in enumerate(("quantize", "smoke"), start=7):
        node = plan.nodes[slot]
        record = jobs.record(store, node.stage, node.key, cluster_jobs.SLURM, str(number), tmp_path / f"{number}.out",
                             plan.variant)
        tracked[(node.stage, node.key)] = cluster._Tracked(plan, slot, node, record)
    monkeypatch.setattr(cluster_jobs, "state", lambda kind, job_id: (cluster_jobs.ENDED, ""))
    monkeypatch.setattr(cluster_jobs, "outcome", lambda folder, job_id: (False, "StageError: quantize: disk full"))
    cluster.reset()
    cluster._launch.active = True
    cluster._wait(tracked, poll_s=0.01)
    quantize, smoke = plan.nodes["quantize"], plan.nodes["smoke"]
    assert cluster.refusal("quantize", quantize.key) == (
        f"job 7 failed: StageError: quantize: disk full; its log: {tmp_path / '7.out'}")
    assert cluster.refusal("smoke", smoke.key) == f"not built: its input quantize {quantize.key[:8]} failed"
    assert cluster.refusal("ollama", plan.nodes["ollama"].key) is None, "a stage that takes seconds runs here"
    cluster.reset()
    assert cluster.refusal("quantize", quantize.key) is None, "launcher=local builds everything here"


def test_plan_says_where_a_job_is(plan_for, monkeypatch, tmp_path):
    plan = plan_for("launcher=slurm")
    node = plan.nodes["train"]
    assert cluster.where(plan, "train", node.key) is None
    jobs.record(Store(plan.store), "train", node.key, cluster_jobs.SLURM, "42", tmp_path / "42.out", plan.variant)
    states = iter([(cluster_jobs.PENDING, "Priority"), (cluster_jobs.RUNNING, "gpu-node-3"), (cluster_jobs.ENDED, "")])
    monkeypatch.setattr(cluster_jobs, "state", lambda kind, job_id: next(states))
    assert cluster.where(plan, "train", node.key) == "queued as slurm job 42 (Priority)"
    assert cluster.where(plan, "train", node.key) == "running as slurm job 42 on gpu-node-3"
    assert cluster.where(plan, "train", node.key) is None, "ended: the store says whether it was built"
