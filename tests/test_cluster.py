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

from conftest import SWEEP_2X2, copy_store
from doit_cli import TINY, doit

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


def test_a_sweep_on_slurm_builds_each_distinct_key_once_as_the_local_build_does(tiny_llama, local_sweep, tmp_path,
                                                                                  slurm):
    """The local 2 x 2 sweep's store (conftest.SWEEP_2X2) without the rank-4 variants' GGUFs and what
    follows them: the same sweep on Slurm converts the rank-4 model once for both of its quants (one job
    for the key two variants share), and writes the local sweep's GGUFs byte for byte and its summary."""
    store = copy_store(local_sweep, tmp_path / "store")
    rank4 = [json.loads(record.read_text())["keys"] for record in (local_sweep / "out").glob("*lora.r-4*/keys.json")]
    assert len(rank4) == 2
    for keys in rank4:
        for slot, key in keys.items():
            if slot.split("@")[0] in ("convert", "parity", "quantize", "ollama", "smoke", "eval", "report"):
                shutil.rmtree(store / slot.split("@")[0] / key, ignore_errors=True)
    overrides = (*TINY, f"model.path={tiny_llama}", *SWEEP_2X2)
    done = doit("sweep", *overrides, *ON_SLURM, store=store, process=True)
    assert re.search(r"^  jobs: 0 pending, 0 running, \d+ done, 0 failed$", done.stdout, re.M), done.tail()
    stages = sorted(record["stage"] for record in records(store))
    assert stages == ["convert", "eval", "eval", "quantize", "quantize", "smoke", "smoke"], stages
    for keys in rank4:
        for gguf in (local_sweep / "quantize" / keys["quantize"]).glob("*.gguf"):
            assert (store / "quantize" / keys["quantize"] / gguf.name).read_bytes() == gguf.read_bytes(), gguf.name
    assert _summary(store) == _summary(local_sweep), "the local sweep's summary"
    local = doit("sweep", *overrides, store=store, process=True)
    # (only the links are made again: each variant's config.yaml shows the launcher it was built with)
    assert set(local.ran) == {"package"}, "built on the cluster: no stage left to build here"


def _summary(store: Path) -> list[list[str]]:
    """The sweep summary's rows, less the columns that name the store or time the machine."""
    (table,) = [folder / "summary.md" for folder in sorted((store / "sweeps").iterdir())][-1:]
    lines = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.read_text().splitlines()
             if line.startswith("|") and not line.startswith("|-")]
    keep = [i for i, name in enumerate(lines[0]) if name not in ("output", "smoke_tokens_per_s")]
    return [[row[i] for i in keep] for row in lines]


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
    # a refusal after a job went in: that job is cancelled, nothing of the half-submitted build waits
    late = doit("build", *tiny_build.overrides, "quant=q8_0", *ON_SLURM, "+launcher.stages.smoke.partition=nope",
                store=fresh_store, process=True, ok=False)
    assert "launcher.stages.smoke.partition=nope: sbatch refused the job" in late.output, late.tail()
    assert "cancelled the 1 job(s) submitted before the refusal" in late.output and not records(fresh_store)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    no_slurm = doit("build", *tiny_build.overrides, "quant=q8_0", *ON_SLURM, store=fresh_store, process=True, ok=False,
                    env={"PATH": str(tmp_path / "bin")})
    assert "launcher=slurm: sbatch is not on PATH" in no_slurm.output and "Traceback" not in no_slurm.output, \
        no_slurm.tail()
    assert not list(fresh_store.glob("quantize/.*.tmp-*")) and not (fresh_store / ".jobs").exists() or \
        not records(fresh_store), "nothing submitted, nothing half-built"
