"""Cross-process locks in the store: one builder per artifact, a bounded number of heavy jobs."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from filelock import FileLock, Timeout

from .artifacts import Store

LOCKS_DIR = ".locks"


def artifact(store: Store, stage: str, key: str) -> FileLock:
    folder = store.root / LOCKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f"{stage}-{key}.lock"))


@contextmanager
def one_of(store: Store, stage: str, count: int, setting: str) -> Iterator[None]:
    """Hold one of `count` slots for `stage` (`setting` is the config key that sets `count`, for
    the message shown while waiting)."""
    folder = store.root / LOCKS_DIR
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
            print(f"  waiting: {count} {stage} job(s) already running ({setting}={count})", flush=True)
            announced = True
        time.sleep(1.0)
