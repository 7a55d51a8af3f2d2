"""`doit clean` removes only what no other variant uses; `doit gc` collects the rest of the store.
On a store of stand-in artifacts (manifests and links, no model): nothing is built here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmbuild.cli.session import make_plans
from llmbuild.facts.layout import MANIFEST
from llmbuild.plan import outputs
from llmbuild.store import published
from llmbuild.store.artifacts import HOST
from llmbuild.store.locks import LOCKS_DIR

from doit_cli import doit

ROOT = Path(__file__).resolve().parent.parent


def run(tmp_path, command, *args):
    """`doit command`: its flags (-n, a dry run) first, then the overrides."""
    flags = tuple(a for a in args if a.startswith("-"))
    overrides = [a for a in args if not a.startswith("-")]
    return doit(command, *overrides, options=flags, store=tmp_path / "store", db=tmp_path / "doit.db").stdout


@pytest.fixture
def store(tmp_path):
    """Two variants, the default demo and quant=q8_0, 'built': every artifact and both out folders."""
    store = f"store={tmp_path / 'store'}"
    plans = [make_plans(ROOT, [store, *extra], strict=False)[0] for extra in ([], ["quant=q8_0"])]
    for plan in plans:
        for slot, node in plan.nodes.items():
            folder = outputs.artifact(plan, slot)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / MANIFEST).write_text(json.dumps({"key": node.key, "stage": node.stage}))
        published.publish(outputs.out_dir(plan), {}, outputs.config_text(plan), outputs.record(plan))
    (tmp_path / "store" / LOCKS_DIR).mkdir()   # as every build makes it
    return plans


def exists(plan, slot) -> bool:
    return outputs.artifact(plan, slot).exists()


def test_clean_keeps_what_another_variant_uses(tmp_path, store):
    demo, q8 = store
    dry = run(tmp_path, "clean", "-n", "quant=q8_0")
    assert f"kept {outputs.artifact(q8, 'train')}: also used by demo" in dry
    assert f"would remove {outputs.artifact(q8, 'ollama')}" in dry
    assert all(exists(q8, slot) for slot in q8.nodes), "a dry run removes nothing"

    run(tmp_path, "clean", "quant=q8_0")
    shared = [s for s in q8.nodes if demo.nodes.get(s) == q8.nodes[s] or q8.nodes[s].key in
              {n.key for n in demo.nodes.values()}]
    assert all(exists(q8, slot) for slot in shared) and "train" in shared and "quantize" in shared
    assert not exists(q8, "ollama") and not exists(q8, "smoke") and not exists(q8, "report")
    assert all(exists(demo, slot) for slot in demo.nodes), "the default build is untouched"
    assert not outputs.out_dir(q8).exists() and outputs.out_dir(demo).exists()


def test_gc_collects_unused_artifacts_failed_builds_and_leftovers(tmp_path, store):
    demo, q8 = store
    published.remove(outputs.out_dir(q8))       # the q8_0 variant's links are gone: its own artifacts are unused
    failed = tmp_path / "store" / "train" / "abc.failed"
    failed.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    leftover = tmp_path / "store" / "merge" / f".abc.tmp-{HOST}-{dead}"
    leftover.mkdir(parents=True)
    # a build on another host that shares the store: its pid means nothing here, so it is left alone
    elsewhere = tmp_path / "store" / "train" / f".def.tmp-gpu-node-07.cluster-{dead}"
    elsewhere.mkdir(parents=True)
    listed = run(tmp_path, "gc", "-n")
    assert str(outputs.artifact(q8, "ollama")) in listed and str(failed) in listed and str(leftover) in listed
    assert f"kept {elsewhere} (0.0 MiB): a build on gpu-node-07.cluster (pid {dead}), in progress or killed " \
           f"there" in listed, listed
    assert str(outputs.artifact(q8, "train")) not in listed, "still used by demo"
    assert exists(q8, "ollama") and failed.exists()
    run(tmp_path, "gc")
    assert not exists(q8, "ollama") and not failed.exists() and not leftover.exists() and elsewhere.is_dir()
    shutil.rmtree(elsewhere)
    assert all(exists(demo, slot) for slot in demo.nodes)
    assert "nothing to remove" in run(tmp_path, "gc", "-n")
    assert "nothing to remove" in run(tmp_path, "gc", "days=30")


def test_gc_refuses_a_folder_that_is_not_a_store(tmp_path):
    """store= pointing at a folder of something else (here: folders with a manifest.json of their own):
    one line, nothing removed."""
    other = tmp_path / "project"
    for folder in ("docs/api", "packages/web"):
        (other / folder).mkdir(parents=True)
        (other / folder / MANIFEST).write_text("{}")
    done = doit("gc", store=other, ok=False)
    assert "is not an llmbuild store" in done.output and "Traceback" not in done.output, done.output
    assert (other / "docs" / "api" / MANIFEST).is_file() and (other / "packages" / "web" / MANIFEST).is_file()
    assert "nothing to remove" in doit("gc", store=tmp_path / "empty").stdout, "no store yet: nothing to do"


def test_gc_removes_nothing_while_a_build_holds_the_store(tmp_path, store):
    """A build in another process holds the store (as every stage and the linking of out/ do until the
    doit command ends): gc refuses and removes nothing, then collects once that process has ended."""
    demo, q8 = store
    published.remove(outputs.out_dir(q8))       # q8_0's own artifacts are unused: what a live build has not linked yet
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from llmbuild.store import locks; from llmbuild.store.artifacts import Store; "
        f"locks.building_in(Store({str(tmp_path / 'store')!r})); print('holding', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        refused = doit("gc", store=tmp_path / "store", ok=False, process=True)
        assert "a build is running on" in refused.output and "Traceback" not in refused.output, refused.output
        assert exists(q8, "ollama"), "nothing removed while the build runs"
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert "removed" in run(tmp_path, "gc") and not exists(q8, "ollama")
