"""Cross-process locks in the store: one builder per artifact, a bounded number of trainings."""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from typing import Iterator

from filelock import FileLock, Timeout
from omegaconf import DictConfig

from ..store import Store

# stages that saturate the machine: never more of them at once than the config allows
SLOT_LIMITS = {"train": lambda cfg: cfg.jobs.train_at_once}


def artifact(store: Store, stage: str, key: str) -> FileLock:
    folder = store.root / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f"{stage}-{key}.lock"))


def slots(store: Store, stage: str, cfg: DictConfig):
    if stage not in SLOT_LIMITS:
        return nullcontext()
    return _one_of(store, stage, SLOT_LIMITS[stage](cfg))


@contextmanager
def _one_of(store: Store, stage: str, count: int) -> Iterator[None]:
    folder = store.root / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    candidates = [FileLock(str(folder / f"{stage}-slot-{i}.lock")) for i in range(count)]
    announced = False
    while True:
        for lock in candidates:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            try:
                yield
            finally:
                lock.release()
            return
        if not announced:
            print(f"  waiting: {count} {stage} job(s) already running (jobs.{stage}_at_once={count})", flush=True)
            announced = True
        time.sleep(1.0)
