"""Shared fixtures: the project root, composing configs, a planner that reads no model file, and what
the end-to-end tests share: one tiny model per test run and one content-addressed store in which its
standard build is done once.

Tests that only read artifacts, or add builds of their own, use the shared store (`tiny_build`):
its keys keep every variant apart, and its locks let two builders share it. A test that asserts
which stages a build runs gets a store of its own, seeded with the standard build as it was when
it finished (`fresh_store`), so what other tests added never changes its answer.

Built once per run, whichever test (or pytest-xdist worker) asks first: the folders live where every
worker of the run can see them, behind a file lock.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from filelock import FileLock

# pytest-xdist's workers share the cores (README: `pytest -n 2` on two): each worker, and the tools it
# starts, get their share of threads. More OpenMP threads than cores spin against each other: on two
# cores, two threads per worker made the end-to-end tests about a fifth slower.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))

from llmbuild.config.compose import compose
from llmbuild.plan.graph import build_plan

from doit_cli import TINY, Done, doit

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def plan_for(tmp_path):
    """Plan a configuration with the store in a temporary folder."""

    def make(*overrides: str):
        return build_plan(compose(ROOT, [f"store={tmp_path / 'store'}", *overrides]), ROOT)

    return make


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A folder every worker of this test run sees (pytest-xdist gives each worker a base temp
    folder below one common parent)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once(shared: Path, name: str, make: Callable[[Path], None]) -> Path:
    """`shared/name`, made by `make(folder)` the first time any test of the run asks for it."""
    folder = shared / name
    with FileLock(str(shared / f".{name}.lock")):
        if not (folder / ".complete").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            make(folder)
            (folder / ".complete").write_text("")
    return folder


@pytest.fixture(scope="session")
def tiny_llama(shared_dir) -> Path:
    """The tiny random Llama with SmolLM2's tokenizer (tiny_model.py), as an HF folder."""
    from tiny_model import build_tiny_llama

    return once(shared_dir, "tiny-llama", lambda folder: build_tiny_llama(folder))


@dataclass(frozen=True)
class TinyBuild:
    """The standard build of the tiny model (doit_cli.TINY) in the shared store."""

    model: Path
    store: Path
    first: Done          # the build that made it, from an empty store
    pristine: Path       # the store as that build left it

    @property
    def overrides(self) -> tuple[str, ...]:
        return (*TINY, f"model.path={self.model}")

    def build(self, *extra: str, command: str = "build", store: Path | None = None, **kwargs) -> Done:
        """`doit <command>` of the standard build plus `extra`, in the shared store unless given one."""
        return doit(command, *self.overrides, *extra, store=store or self.store, **kwargs)


@pytest.fixture(scope="session")
def tiny_build(shared_dir, tiny_llama) -> TinyBuild:
    def make(folder: Path) -> None:
        done = doit("build", *TINY, f"model.path={tiny_llama}", store=folder / "store")
        (folder / "first.stdout").write_text(done.stdout)
        (folder / "first.stderr").write_text(done.stderr)
        copy_store(folder / "store", folder / "pristine")

    folder = once(shared_dir, "tiny-build", make)
    first = Done(0, (folder / "first.stdout").read_text(), (folder / "first.stderr").read_text())
    return TinyBuild(tiny_llama, folder / "store", first, folder / "pristine")


# a 2 x 2 sweep of the tiny model (two ranks, two quants, a cheap eval), built once with `-n 2`
SWEEP_2X2 = ("jobs.train_at_once=1", "lora.r=2,4", "quant=q4_k_m,q8_0", "eval.enabled=true", "eval.quants=[]",
             "eval.base=false", "eval.max_new_tokens=4")


@pytest.fixture(scope="session")
def local_sweep(shared_dir, tiny_llama) -> Path:
    """The store of SWEEP_2X2 built on this machine (`doit sweep -n 2`), for tests that read it."""
    def make(folder: Path) -> None:
        doit("sweep", *TINY, f"model.path={tiny_llama}", *SWEEP_2X2, options=("-n", "2"), store=folder / "store",
             process=True)

    return once(shared_dir, "local-sweep", make) / "store"


def copy_store(source: Path, target: Path) -> Path:
    """A store of its own holding `source`'s finished artifacts (copies: a test may write into them)."""
    target.mkdir(parents=True, exist_ok=True)
    for manifest in source.glob("*/*/manifest.json"):
        artifact = manifest.parent
        shutil.copytree(artifact, target / artifact.parent.name / artifact.name, symlinks=True)
    return target


@pytest.fixture
def fresh_store(tmp_path, tiny_build) -> Path:
    """A store of this test's own, seeded with the standard tiny build as it first finished."""
    return copy_store(tiny_build.pristine, tmp_path / "store")


# With pytest-xdist (README: `pytest -n 2`), a module's tests run on one worker, in their order, unless
# the module is listed here: its tests share only the session's builds and spread over the workers.
SPREAD = {"test_family_builds", "test_e2e_tiny"}
# the longest first, so that neither worker is left with an hour's tail: minutes each took on 2 cores
MINUTES = {"test_demo_build": 8, "test_e2e_vllm": 7, "test_e2e_methods": 4, "test_cluster": 4, "test_real_gguf": 3,
           "test_family_builds": 2, "test_e2e_tiny": 2}


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__
        if module not in SPREAD and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(module))
    items.sort(key=lambda item: -MINUTES.get(item.module.__name__, 0))   # stable: each module keeps its order
