"""Builds and sweeps on a real one-node Slurm cluster (tests/slurm_cluster.py, started and stopped
here): a job per stale node with afterok dependencies, each distinct key built once, the same
bytes as a local build, submit-and-leave then collect, a requeued training that resumes from its
checkpoint, and Slurm's refusals as one line naming the setting."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import slurm_cluster

from doit_cli import doit

pytestmark = pytest.mark.slow

# CPU jobs of one core each (two run at once on two cores); no GPU on this cluster
ON_SLURM = ("launcher=slurm", "launcher.poll_s=1", "launcher.cpus_per_task=1", "launcher.mem_gb=1",
            "launcher.stages.train.gpus_per_node=0")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = slurm_cluster.missing()
    if why:
        pytest.fail(f"no Slurm for the launcher tests: {why}")
    state = tmp_path_factory.mktemp("slurm")
    slurm_cluster.start(state)
    try:
        yield state
    finally:
        slurm_cluster.stop(state)


def records(store: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((store / ".jobs").glob("*.json"))]


def test_a_sweep_on_slurm_builds_each_distinct_key_once_as_the_local_build_does(tiny_build, fresh_store, slurm):
    """The standard build's training and what follows it are removed from a copy of its store: the 2x2
    sweep (lora.r 8 and 4, two quants) trains both ranks as jobs, and the rebuilt standard GGUF is the
    local build's, byte for byte. The same sweep run locally afterwards builds nothing."""
    for stage in ("train", "merge", "convert", "parity", "quantize", "ollama", "smoke"):
        shutil.rmtree(fresh_store / stage)
    sweep = ("lora.r=8,4", "quant=q4_k_m,q8_0")
    done = doit("sweep", *tiny_build.overrides, *sweep, *ON_SLURM, store=fresh_store, process=True)
    assert re.search(r"^  jobs: 0 pending, 0 running, \d+ done, 0 failed$", done.stdout, re.M), done.tail()
    submitted = records(fresh_store)
    stages = [record["stage"] for record in submitted]
    assert stages.count("train") == 2 and stages.count("merge") == 2 and stages.count("convert") == 2, stages
    assert stages.count("quantize") == 4 and len({(r["stage"], r["key"]) for r in submitted}) == len(submitted)
    assert "data" not in stages and "ollama" not in stages, "stages that take seconds run where the command ran"

    standard = next(tiny_build.pristine.glob("quantize/*/*-Q4_K_M.gguf"))
    rebuilt = fresh_store / "quantize" / standard.parent.name / standard.name
    assert rebuilt.read_bytes() == standard.read_bytes(), "the same key on the cluster, the same bytes"

    local = doit("sweep", *tiny_build.overrides, *sweep, store=fresh_store, process=True)
    # (only the links are made again: each variant's config.yaml shows the launcher it was built with)
    assert set(local.ran) == {"package"}, "built on the cluster: no stage left to build here"
    assert done.stdout[done.stdout.index("| variant"):].split("summary:")[0] == \
        local.stdout[local.stdout.index("| variant"):].split("summary:")[0], "the same summary"


def test_submit_and_leave_then_collect_with_a_requeued_training_resuming(tiny_build, fresh_store, slurm):
    """launcher.wait=false returns once the jobs are queued; the training job is requeued mid-run (as
    preemption does); the same command then submits nothing it has queued, waits, and the training goes
    on from its checkpoint."""
    change = ("train.max_steps=30", "train.save_steps=3", "target=[hf]")   # jobs: the training and the merge
    leave = doit("build", *tiny_build.overrides, *change, *ON_SLURM, "launcher.wait=false", store=fresh_store,
                 process=True)
    assert "jobs are queued or running (launcher.wait=false): run the same command again" in leave.stdout, \
        leave.tail()
    train = next(record for record in records(fresh_store) if record["stage"] == "train")
    plan = doit("plan", *tiny_build.overrides, *change, *ON_SLURM, store=fresh_store).stdout
    assert re.search(rf"^  train\s+{train['key'][:8]}\s+STALE, (queued|running) as slurm job {train['job_id']}",
                     plan, re.M), plan

    checkpoint = fresh_store / "train" / f".{train['key']}.resume" / "adapter"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(checkpoint.glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.3)
    assert list(checkpoint.glob("checkpoint-*/trainer_state.json")), Path(train["log"]).read_text()[-3000:]
    subprocess.run(["scontrol", "requeue", train["job_id"]], check=True)

    collect = doit("build", *tiny_build.overrides, *change, *ON_SLURM, store=fresh_store, process=True)
    assert re.search(r"^  slurm: 0 job\(s\) submitted, \d+ already queued or running", collect.stdout, re.M), \
        collect.tail()
    assert (fresh_store / "train" / train["key"] / "manifest.json").is_file(), collect.tail()
    log = Path(train["log"]).read_text()
    assert re.search(r"resuming from checkpoint-\d+ \(step \d+\)", log), log[-3000:]
    assert not checkpoint.parent.exists() and "merged HF model" in collect.stdout


def test_slurm_refusals_are_one_line_naming_the_setting(tiny_build, fresh_store, slurm, tmp_path):
    bad = doit("build", *tiny_build.overrides, "quant=q8_0", *ON_SLURM, "launcher.partition=nope", store=fresh_store,
               process=True, ok=False)
    assert "launcher.partition=nope: sbatch refused the job" in bad.output and "invalid partition" in bad.output
    assert "Traceback" not in bad.output, bad.tail()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    no_slurm = doit("build", *tiny_build.overrides, "quant=q8_0", *ON_SLURM, store=fresh_store, process=True, ok=False,
                    env={"PATH": str(tmp_path / "bin")})
    assert "launcher=slurm: sbatch is not on PATH" in no_slurm.output and "Traceback" not in no_slurm.output, \
        no_slurm.tail()
    assert not list(fresh_store.glob("quantize/.*.tmp-*")) and not (fresh_store / ".jobs").exists() or \
        not records(fresh_store), "nothing submitted, nothing half-built"
