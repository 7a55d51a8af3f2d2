"""The artifact store: complete or absent, never half-written."""

from __future__ import annotations

import pytest

from llmbuild.errors import StageError
from llmbuild.store.artifacts import HOST, Store
from llmbuild.store.digests import DigestCache


def test_successful_build_is_renamed_into_place_with_a_manifest(tmp_path):
    store = Store(tmp_path)
    with store.building("train", "k1", {"config": {"lora.r": 8}}) as out:
        (out / "adapter.bin").write_bytes(b"weights")
        assert not store.is_complete("train", "k1")
    manifest = store.manifest("train", "k1")
    assert store.is_complete("train", "k1")
    assert manifest["config"] == {"lora.r": 8} and manifest["files"]["adapter.bin"]["size"] == 7
    assert manifest["seconds"] >= 0


def test_failed_build_leaves_nothing_a_later_build_would_trust(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(StageError) as err:
        with store.building("train", "k2", {}) as out:
            (out / "train.log").write_text("boom")
            raise StageError(f"failed; see {out / 'train.log'}")
    assert not store.is_complete("train", "k2") and not store.path("train", "k2").exists()
    kept = tmp_path / "train" / "k2.failed" / "train.log"
    assert kept.read_text() == "boom" and str(kept) in str(err.value)


def test_interrupted_build_is_removed(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with store.building("merge", "k3", {}) as out:
            (out / "part").write_text("x")
            raise KeyboardInterrupt
    assert list((tmp_path / "merge").iterdir()) == []


def test_digest_cache_rehashes_only_changed_files(tmp_path, monkeypatch):
    data = tmp_path / "big.bin"
    data.write_bytes(b"a" * 1000)
    cache = DigestCache(tmp_path / "digests.json")
    first = cache.digest(data)
    cache.save()
    calls = []
    import llmbuild.store.digests as store_module
    real = store_module.file_sha256
    monkeypatch.setattr(store_module, "file_sha256", lambda p: calls.append(p) or real(p))
    again = DigestCache(tmp_path / "digests.json")
    assert again.digest(data) == first and calls == []
    data.write_bytes(b"b" * 1001)
    assert again.digest(data) != first and calls == [data.resolve()]


def test_leftovers_of_killed_builds_are_removed_by_the_next_build_of_that_key(tmp_path):
    import os
    import subprocess
    import sys

    store = Store(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    killed = tmp_path / "train" / f".k1.tmp-{dead}"
    running = tmp_path / "train" / f".k1.tmp-{os.getppid()}"   # a live process: in use
    other_key = tmp_path / "train" / f".k2.tmp-{dead}"
    # another host's builds: its pids cannot be checked here; only the key's own builder (which holds the
    # key's lock, on every host) may take a folder of that key as a leftover
    other_host, other_host_k2 = (tmp_path / "train" / f".{key}.tmp-node-2-{os.getpid()}" for key in ("k1", "k2"))
    for folder in (killed, running, other_key, other_host, other_host_k2):
        (folder / "adapter").mkdir(parents=True)
    assert store.leftovers() == [killed, other_key]
    assert store.elsewhere() == [other_host, other_host_k2]
    with store.building("train", "k1", {"key": "k1"}) as out:
        assert out.name == f".k1.tmp-{HOST}-{os.getpid()}"
        (out / "x").write_text("x")
    assert not killed.exists() and running.exists() and other_key.exists()
    assert not other_host.exists() and other_host_k2.exists()
    assert store.is_complete("train", "k1")


def test_a_failing_tool_is_one_line_with_its_own_error_and_the_log(tmp_path):
    import sys

    import pytest

    from llmbuild.adapters.process import run_logged
    from llmbuild.errors import ToolError

    code = ("import sys; print('loading 1/2'); print('Traceback (most recent call last):');"
            "print('  File x, line 1'); print(\"ValueError: Target modules {'foo'} not found in the base model.\");"
            "sys.exit(1)")
    with pytest.raises(ToolError) as err:
        run_logged([sys.executable, "-c", code], tmp_path / "t.log", what="llamafactory-cli train", quiet=True)
    message = str(err.value)
    assert message == (f"llamafactory-cli train failed (exit 1): ValueError: Target modules {{'foo'}} not found in "
                       f"the base model.; full log: {tmp_path / 't.log'}")
    assert "Traceback" in (tmp_path / "t.log").read_text()


def test_a_full_disk_keeps_nothing_and_says_what_to_do(tmp_path):
    import errno

    import pytest

    from llmbuild.store.artifacts import DiskFull

    store = Store(tmp_path)
    with pytest.raises(DiskFull, match="no space left.*doit gc -n"):
        with store.building("convert", "k", {"key": "k"}) as out:
            (out / "part.gguf").write_bytes(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not list((tmp_path / "convert").iterdir()), "neither the artifact nor a .failed folder"


def test_progress_in_a_file_is_sparse_however_long_the_work(monkeypatch):
    import io

    from llmbuild.stages import context

    clock = [0.0]
    monkeypatch.setattr(context.time, "monotonic", lambda: clock[0])
    stream = io.StringIO()
    progress = context.Progress(stream, "training")
    for step in range(1, 1001):          # 1000 steps of 1 s: about 17 minutes
        clock[0] += 1.0
        progress.update(step, 1000, "loss 1.0")
    lines = stream.getvalue().splitlines()
    assert 3 <= len(lines) <= 6 and lines[0] == "  training: 30/1000, loss 1.0", lines


def test_a_store_that_cannot_be_written_is_one_message(tmp_path, monkeypatch):
    import pytest

    from llmbuild.errors import StageError

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pathlib.Path.mkdir", refuse)   # as a non-root user in a read-only folder sees it
    with pytest.raises(StageError, match="cannot write to the store .*set store="):
        with Store(tmp_path / "store").building("base", "k", {}):
            pass


def test_training_progress_shows_tokens_per_second_once_logged():
    from llmbuild.adapters import llamafactory

    seen, times = [], iter([10.0, 12.0])
    read = llamafactory.train_progress(lambda step, steps, detail: seen.append((step, steps, detail)),
                                       clock=lambda: next(times))
    read(" 25%|██▌       | 1/4 [00:01<00:03,  1.10s/it]")
    read("{'loss': '10.81', 'grad_norm': '0.8886', 'epoch': '0.25', 'num_input_tokens_seen': 93}")
    read(" 25%|██▌       | 1/4 [00:01<00:03,  1.10s/it]")
    read("{'loss': '10.5', 'grad_norm': '0.8886', 'epoch': '0.5', 'num_input_tokens_seen': 2941}")
    read(" 50%|█████     | 2/4 [00:02<00:02,  1.05s/it]")
    assert seen == [(1, 4, "1.10 s/it, 00:03 left"), (1, 4, "loss 10.8100, 1.10 s/it, 00:03 left"),
                    (2, 4, "loss 10.5000, 1,424 tokens/s, 00:02 left")]   # (2941 - 93) tokens in 2 s


def test_a_training_resumes_from_its_newest_complete_checkpoint(tmp_path):
    """The key's resume folder after a killed training: checkpoint-6 was cut off as it was written (no
    trainer_state.json), checkpoint-3 is whole. The next build goes on from checkpoint-3 and drops
    checkpoint-6; with no whole checkpoint, what the killed run left goes and training starts afresh."""
    import json
    from types import SimpleNamespace

    from llmbuild.adapters.llamafactory import last_checkpoint
    from llmbuild.stages import train

    saved = tmp_path / ".k.resume" / "adapter"
    for step, whole in ((3, True), (6, False)):
        (saved / f"checkpoint-{step}").mkdir(parents=True)
        (saved / f"checkpoint-{step}" / "adapter_model.safetensors").write_bytes(b"w")
        if whole:
            (saved / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (saved / "trainer_log.jsonl").write_text("{}\n")
    said = []
    ctx = SimpleNamespace(say=said.append)
    assert last_checkpoint(saved) == saved / "checkpoint-3"
    assert train._resume_from(ctx, saved) == ["resume_from_checkpoint=adapter/checkpoint-3"]
    assert sorted(p.name for p in saved.iterdir()) == ["checkpoint-3", "trainer_log.jsonl"]
    assert said == ["resuming from checkpoint-3 (step 3), which an earlier build of this key saved before it was "
                    "stopped"]
    (saved / "checkpoint-3" / "trainer_state.json").write_text('{"global_st')   # cut off too
    assert train._resume_from(ctx, saved) == [] and not list(saved.iterdir())
