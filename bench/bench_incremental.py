"""Incremental-build benchmark, measured side by side in one run on a tiny random model:

1. no-op rebuild time of a built variant (doit build, nothing stale);
2. tasks executed after each one-key change, against the minimal set (the stages that read the key),
   also in a two-stage pipeline (SFT, then DPO on the SFT model: recipe=demo-dpo);
3. tasks executed by a 3 x 2 sweep, against six separate full builds;
4. planning time of a 20-variant sweep (doit plan), which reads no model file.

    python bench/bench_incremental.py            # about 6 minutes on 2 CPU cores
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tiny_model import build_tiny_llama  # noqa: E402

STAGES = ("base", "data", "train", "merge", "convert", "parity", "quantize", "ollama", "smoke", "eval", "report",
          "package")
AFTER_TRAIN = {"train", "merge", "convert", "parity", "quantize", "ollama", "smoke", "eval", "report", "package"}
# the stages that must run after one key changes: those reading it, and what depends on them
MINIMAL = {
    "quant=q8_0": {"quantize", "ollama", "smoke", "eval", "report", "package"},
    "quant.convert_type=bf16": {"convert", "parity", "quantize", "ollama", "smoke", "eval", "report", "package"},
    "prompt.temperature=0.2": {"ollama", "report", "package"},   # the report shows the resolved config
    "smoke.max_tokens=4": {"smoke", "report", "package"},
    "eval.max_new_tokens=2": {"eval", "report", "package"},
    "lora.r=4": AFTER_TRAIN,
    "train.learning_rate=5e-4": AFTER_TRAIN,
    "dataset.max_samples=6": {"data"} | AFTER_TRAIN,
}
# the same in a pipeline: SFT (train@sft), then DPO; a change to one stage runs it and what follows
PIPELINE = ["recipe=demo-dpo", "pipeline.sft.dataset.max_samples=8", "pipeline.sft.train.max_steps=2",
            "dataset.holdout=2", "smoke.questions=[Hi]"]
PIPELINE_MINIMAL = {
    "train.pref_beta=0.2": AFTER_TRAIN,                                      # the DPO stage: never SFT
    "pipeline.sft.train.learning_rate=5e-4": {"train@sft", "merge@sft"} | AFTER_TRAIN,
    "pipeline.sft.lora.r=4": {"train@sft", "merge@sft"} | AFTER_TRAIN,
    "quant=q8_0": MINIMAL["quant=q8_0"],
}
TASK_LINE = re.compile(r"^\.  (\w+):\S+(?: .*?\[(\w+@[\w-]+)\])?.*$", flags=re.M)   # "[train@sft]": a pipeline stage


def doit(command: str, store: Path, model: Path, *extra: str) -> tuple[float, list[str], str]:
    argv = [sys.executable, "-m", "doit", command, "--db-file", str(store / "doit.db"), f"store={store}",
            "model=local", f"model.path={model}", "model.name=Tiny", "model.chat_format=chatml",
            "dataset.max_samples=8", "train.max_steps=2", "train.per_device_train_batch_size=2",
            "smoke.max_tokens=8", "eval.quants=[]", "eval.base=false", "eval.max_new_tokens=4", *extra]
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"doit {command} {' '.join(extra)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return seconds, [slot or stage for stage, slot in TASK_LINE.findall(result.stdout)], result.stdout


def one_key_changes(store: Path, model: Path, setup: list[str], changes: dict[str, set[str]]) -> None:
    """Build with each change on top of `setup` and print the tasks it ran against the minimal set."""
    exact = 0
    for change, minimal in changes.items():
        seconds, ran, _ = doit("build", store, model, *setup, change)
        executed = set(ran)
        verdict = "minimal" if executed == minimal else (
            f"extra {sorted(executed - minimal)}, missing {sorted(minimal - executed)}")
        exact += executed == minimal
        print(f"   {change:<38} ran {len(ran):>2} tasks in {seconds:6.1f} s: {verdict}")
    print(f"   {exact}/{len(changes)} changes ran exactly the minimal set")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="llmbuild-bench-") as tmp:
        top = Path(tmp)
        model = build_tiny_llama(top / "tiny")
        store = top / "store"
        store.mkdir()

        cold, ran, _ = doit("build", store, model)
        print(f"cold build of the tiny variant: {cold:.1f} s ({len(ran)} tasks)")
        noop = [doit("build", store, model)[:2] for _ in range(3)]
        median = statistics.median(seconds for seconds, _ in noop)
        print(f"1. no-op rebuild: median {median:.2f} s over 3 runs ({median / cold:.1%} of the cold build), "
              f"tasks run: {max(len(ran) for _, ran in noop)}")

        print("2. one-key changes: tasks executed vs minimal set")
        one_key_changes(store, model, [], MINIMAL)

        pipeline_store = top / "pipeline"
        pipeline_store.mkdir()
        seconds, ran, _ = doit("build", pipeline_store, model, *PIPELINE)
        print(f"2b. pipeline SFT -> DPO: cold build {seconds:.1f} s ({len(ran)} tasks); one-key changes:")
        one_key_changes(pipeline_store, model, PIPELINE, PIPELINE_MINIMAL)

        sweep_store = top / "sweep"
        sweep_store.mkdir()
        seconds, ran, _ = doit("sweep", sweep_store, model, "lora.r=2,4,8", "quant=q4_k_m,q8_0")
        naive = 6 * len(STAGES)
        per_stage = {stage: ran.count(stage) for stage in STAGES}
        print(f"3. 3x2 sweep: {len(ran)} tasks in {seconds:.1f} s vs {naive} for six separate builds "
              f"({len(ran) / naive:.0%}); per stage {per_stage}")

        sweep = ["lora.r=4,8,16,32,64", "quant=q4_k_m,q8_0,q5_k_m,q6_k"]
        wall = [doit("plan", store, model, *sweep)[0] for _ in range(3)]
        from llmbuild.cli.session import make_plans
        args = [f"store={store}", "model=local", f"model.path={model}", "model.name=Tiny", *sweep]
        make_plans(ROOT, args)  # warm the imports
        started = time.perf_counter()
        plans = make_plans(ROOT, args)
        inside = time.perf_counter() - started
        print(f"4. planning a {len(plans)}-variant sweep: {inside:.2f} s in process (compose + keys), "
              f"`doit plan` {statistics.median(wall):.2f} s wall including interpreter start-up")


if __name__ == "__main__":
    main()
