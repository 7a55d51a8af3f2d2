"""Ctrl-C during training, as a terminal sends it (SIGINT to the whole process group): one line,
no traceback, nothing of the interrupted stage kept, and the same command then finishes the build."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiny_model import build_tiny_llama

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_ctrl_c_during_training_keeps_nothing_and_a_rerun_finishes(tmp_path):
    model = build_tiny_llama(tmp_path / "tiny")
    def argv(steps: int) -> list[str]:
        return [sys.executable, "-m", "doit", "build", "--db-file", str(tmp_path / "doit.db"),
                f"store={tmp_path / 'store'}", "model=local", f"model.path={model}", "model.name=Tiny",
                "dataset.max_samples=8", f"train.max_steps={steps}", "train.logging_steps=1",
                "train.per_device_train_batch_size=2", "eval.enabled=false", "target=[llamacpp]"]

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    build = subprocess.Popen(argv(400), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                             start_new_session=True)
    train = tmp_path / "store" / "train"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(train.glob(".*.tmp-*/adapter/trainer_log.jsonl")):
        time.sleep(0.5)   # training has logged a step
    assert build.poll() is None, build.stdout.read()
    os.killpg(build.pid, signal.SIGINT)
    out, _ = build.communicate(timeout=120)
    assert build.returncode != 0
    assert re.search(r"^.*train: interrupted \(Ctrl-C\); nothing of train \w{8} was kept", out, flags=re.M), out
    assert "Traceback" not in out, out
    assert not list(train.glob(".*.tmp-*")) and not [p for p in train.iterdir() if not p.name.startswith(".")], \
        "no half-trained adapter, no leftover"

    done = subprocess.run(argv(2), cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
