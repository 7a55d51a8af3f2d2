"""The artifact store: complete or absent, never half-written."""

from __future__ import annotations

import pytest

from llmbuild.errors import StageError
from llmbuild.store.artifacts import Store
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
