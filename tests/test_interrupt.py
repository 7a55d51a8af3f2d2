"""Ctrl-C during training, as a terminal sends it (SIGINT to the whole process group): one line,
no traceback, nothing of the interrupted stage kept, and the same command then finishes the build."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from doit_cli import popen

pytestmark = pytest.mark.slow


def test_ctrl_c_during_training_keeps_nothing_and_a_rerun_finishes(tiny_build, fresh_store):
    """In a store holding the standard build: a long training (400 steps) is interrupted; then a
    training in the same store runs to the end."""
    store = fresh_store
    build = popen("build", *tiny_build.overrides, "train.max_steps=400", store=store, start_new_session=True)
    train = store / "train"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(train.glob(".*.tmp-*/adapter/trainer_log.jsonl")):
        time.sleep(0.5)   # training has logged a step
    assert build.poll() is None, build.stdout.read()
    os.killpg(build.pid, signal.SIGINT)
    out, _ = build.communicate(timeout=120)
    assert build.returncode != 0
    assert re.search(r"^.*train: interrupted \(Ctrl-C\); nothing of train \w{8} was kept", out, flags=re.M), out
    assert "Traceback" not in out, out
    assert not list(train.glob(".*.tmp-*")) and len([p for p in train.iterdir() if not p.name.startswith(".")]) == 1, \
        "no half-trained adapter, no leftover: only the standard build's training"

    again = tiny_build.build("train.max_steps=3", store=store)
    assert "train" in again.ran and "interrupted" not in again.output, "the same store trains again"
