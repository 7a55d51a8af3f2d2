"""Cluster and cache benchmark, measured side by side in one run on a tiny random model (and the demo
for the cache):

1. an 8-variant sweep (lora.r x quant x learning rate) through Slurm: jobs per stage against the
   minimal set (the distinct keys of the stages that run as jobs), and the seconds of overhead per
   job (the Slurm sweep's wall time against the same sweep built locally, one job at a time in both);
2. a no-op re-run of that sweep through Slurm: its time, and jobs submitted (none);
3. the demo from an empty store with a cache that holds it (file:// on this disk) against the
   demo's own build from nothing.

Needs a Slurm cluster whose nodes see this folder (sbatch on PATH; tests/slurm_cluster.py starts a
one-node one as root):

    python bench/bench_cluster.py            # about 20 minutes on 2 CPU cores
    python bench/bench_cluster.py cache      # only 3. (no Slurm needed)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_model import build_tiny_llama  # noqa: E402

SWEEP = ("lora.r=4,8", "quant=q4_k_m,q8_0", "train.learning_rate=1e-4,2e-4")
JOB_STAGES = ("base", "train", "merge", "convert", "quantize", "smoke")   # plan/stages.py: job=True, in this graph
# one job at a time on the two cores, as the local build runs one task at a time
ON_SLURM = ("launcher=slurm", "launcher.poll_s=1", "launcher.cpus_per_task=2", "launcher.mem_gb=1",
            "launcher.stages.train.gpus_per_node=0")


def doit(command: str, store: Path, *args: str) -> tuple[float, str]:
    state = ["--db-file", str(store.parent / f"{store.name}.db")] if command in ("build", "sweep", "plan") else []
    argv = [sys.executable, "-m", "doit", command, *state, f"store={store}", *args]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def tiny(model: Path) -> tuple[str, ...]:
    return ("model=local", f"model.path={model}", "model.name=Tiny", "model.chat_format=chatml",
            "dataset.max_samples=8", "train.max_steps=2", "train.per_device_train_batch_size=2",
            "smoke.max_tokens=8", "eval.enabled=false")


def minimal_jobs(store: Path, model: Path) -> Counter:
    """Distinct keys per job stage in the sweep's plan (what must be built from nothing)."""
    _, text = doit("plan", store, *tiny(model), *SWEEP)
    keys = set(re.findall(r"^  (\w+)(?:@\S+)?\s+([0-9a-f]{8})\s+STALE", text, re.M))
    return Counter(stage for stage, _ in keys if stage in JOB_STAGES)


def main() -> None:
    if sys.argv[1:] == ["cache"]:
        return cache_only()
    if shutil.which("sbatch") is None:
        sys.exit("needs a Slurm cluster: sbatch is not on PATH (tests/slurm_cluster.py starts a one-node one)")
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    model = work / "tiny"
    build_tiny_llama(model)

    minimal = minimal_jobs(work / "slurm", model)
    slurm_seconds, _ = doit("sweep", work / "slurm", *tiny(model), *SWEEP, *ON_SLURM)
    submitted = Counter(json.loads(p.read_text())["stage"] for p in (work / "slurm" / ".jobs").glob("*.json"))
    local_seconds, _ = doit("sweep", work / "local", *tiny(model), *SWEEP)
    noop_seconds, noop = doit("sweep", work / "slurm", *tiny(model), *SWEEP, *ON_SLURM)
    jobs = sum(submitted.values())
    print("1. 8-variant sweep through Slurm")
    print(f"   {'stage':<10} {'jobs':>5} {'minimal':>8}")
    for stage in JOB_STAGES:
        print(f"   {stage:<10} {submitted[stage]:>5} {minimal[stage]:>8}")
    print(f"   jobs = minimal set: {submitted == minimal}")
    print(f"   wall: Slurm {slurm_seconds:.0f} s, local {local_seconds:.0f} s -> "
          f"{(slurm_seconds - local_seconds) / jobs:.1f} s of overhead per job ({jobs} jobs), "
          f"ratio {slurm_seconds / local_seconds:.2f}")
    again = re.search(r"(\d+) job\(s\) submitted", noop)
    print(f"2. no-op re-run through Slurm: {noop_seconds:.1f} s, {again[1] if again else 0} job(s) submitted")

    demo_cache(work)
    shutil.rmtree(work, ignore_errors=True)


def cache_only() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    demo_cache(work)
    shutil.rmtree(work, ignore_errors=True)


def demo_cache(work: Path) -> None:
    demo_seconds, _ = doit("build", work / "demo")
    cache = f"cache.url=file://{work / 'cache'}"
    doit("push", work / "demo", cache)
    pulled_seconds, pulled = doit("build", work / "demo-from-cache", cache)
    taken = len(re.findall(r"^  \w+ [0-9a-f]{8} taken from the cache", pulled, re.M))
    print(f"3. the demo: built from nothing {demo_seconds:.0f} s; from the cache {pulled_seconds:.1f} s "
          f"({taken} artifacts taken) -> {demo_seconds / pulled_seconds:.0f}x")


if __name__ == "__main__":
    main()
