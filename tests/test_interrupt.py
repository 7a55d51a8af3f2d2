"""Ctrl-C during training, as a terminal sends it (SIGINT to the whole process group): one line,
no traceback, nothing of the interrupted stage kept."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from doit_cli import doit, popen

pytestmark = pytest.mark.slow


def as_a_shell_starts_it() -> None:
    """Ctrl-C's signal at its default, unblocked, as a shell starts a command (the test process may
    have inherited it ignored or blocked from a library an earlier test ran, and a child keeps that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def signal_state(pid: int) -> str:
    """The process's blocked and ignored signal masks, for a failure's message."""
    try:
        status = open(f"/proc/{pid}/status", encoding="ascii").read()
    except OSError:
        return "gone"
    return " ".join(line for line in status.splitlines() if line.startswith(("SigBlk", "SigIgn")))


def test_ctrl_c_during_training_keeps_nothing_and_a_rerun_finishes(tiny_build, fresh_store):
    """In a store holding the standard build: a long training (400 steps) runs; doit gc, in another
    process, removes nothing meanwhile (the build's artifacts are not linked yet); the training is
    interrupted; the store then plans that training as stale, with nothing of it kept."""
    store = fresh_store
    build = popen("build", *tiny_build.overrides, "train.max_steps=400", store=store, start_new_session=True,
                  preexec_fn=as_a_shell_starts_it)
    train = store / "train"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(train.glob(".*.tmp-*/adapter/trainer_log.jsonl")):
        time.sleep(0.5)   # training has logged a step
    assert build.poll() is None, build.stdout.read()
    artifacts = sorted(store.glob("*/*/manifest.json"))
    refused = doit("gc", store=store, ok=False, process=True)
    assert "a build is running on" in refused.output and "Traceback" not in refused.output, refused.output
    assert sorted(store.glob("*/*/manifest.json")) == artifacts, "gc removed nothing from the live build's store"
    state = signal_state(build.pid)
    os.killpg(build.pid, signal.SIGINT)
    out, _ = build.communicate(timeout=120)
    assert build.returncode != 0, f"Ctrl-C did not stop the build ({state}):\n{out}"
    assert re.search(r"^.*train: interrupted \(Ctrl-C\); nothing of train \w{8} was kept", out, flags=re.M), out
    assert "Traceback" not in out, out
    assert not list(train.glob(".*.tmp-*")) and len([p for p in train.iterdir() if not p.name.startswith(".")]) == 1, \
        "no half-trained adapter, no leftover: only the standard build's training"
    # (a killed training built again: tests/test_cluster.py, where a requeued job resumes it)
    plan = doit("plan", *tiny_build.overrides, "train.max_steps=400", store=store).stdout
    assert re.search(r"^  train\s+\w{8}\s+STALE", plan, re.M) and "up to date" in plan, plan


def test_evals_scratch_with_held_out_text_lives_in_the_unfinished_artifact(tiny_build, monkeypatch):
    """The requests eval hands its workers hold held-out rows: where a killed eval leaves them, the
    rerun and `doit gc` clean (the artifact's unfinished folder), never a folder of the system's."""
    from llmbuild.errors import StageError
    from llmbuild.stages import eval as eval_stage

    def stop(ctx, name, request, scratch, *rest):
        raise StageError(f"scratch at {scratch}")   # the stage runs in a copy of this process: say it

    monkeypatch.setattr(eval_stage, "_run_worker", stop)
    done = tiny_build.build("eval.enabled=true", "eval.base=false", "eval.max_rows=2", ok=None)
    found = re.search(r"scratch at (\S+)", done.output)
    assert found, done.output[-3000:]
    scratch = found[1]
    # (a failed build's folder is kept as <key>.failed, its logs to read; messages name it so)
    assert re.search(r"/eval/(\.[0-9a-f]+\.tmp-\S+-\d+|[0-9a-f]+\.failed)/\.scratch-", scratch), scratch
    assert not os.path.exists(scratch) and not list((tiny_build.store / "eval").glob(".*.tmp-*"))

