"""Cross-process locks in the store: one builder per artifact, a bounded number of heavy jobs, and
no garbage collection while a build runs.

A doit command that builds or links artifacts holds the store's builders lock shared from its first
stage until it ends (`building_in`, `release_all`): artifacts it finished but has not linked under
out/ yet are unreferenced until then. `doit gc` takes the lock exclusively, without waiting
(`collecting`): while any build holds it, gc removes nothing. flock locks reach every host of a
store on NFS (the README's Store section says which filesystems)."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ..errors import LlmbuildError
from .artifacts import HOST, Store

LOCKS_DIR = ".locks"
BUILDERS = "builders.lock"

_held: dict[Path, int] = {}   # store -> this process's open, shared-locked builders file


class BuildRunning(LlmbuildError):
    """doit gc found a build running on the store."""


def _folder(store: Store) -> Path:
    folder = store.root / LOCKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def artifact(store: Store, stage: str, key: str) -> FileLock:
    return FileLock(str(_folder(store) / f"{stage}-{key}.lock"))


@contextmanager
def one_of(store: Store, stage: str, count: int, setting: str) -> Iterator[None]:
    """Hold one of this host's `count` slots for `stage` (`setting` is the config key that sets
    `count`, for the message shown while waiting): the limit is per machine, its GPUs and memory."""
    candidates = [FileLock(str(_folder(store) / f"{stage}-slot-{HOST}-{i}.lock")) for i in range(count)]
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
            print(f"  waiting: {count} {stage} job(s) already running on {HOST} ({setting}={count})", flush=True)
            announced = True
        time.sleep(1.0)


def building_in(store: Store) -> None:
    """Hold `store`'s builders lock shared until `release_all` (or this process's end); waits while
    doit gc runs on the store."""
    root = store.root.resolve()
    if root in _held:
        return
    fd = os.open(_folder(store) / BUILDERS, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"  waiting: doit gc is removing unused artifacts from {store.root}", flush=True)
        fcntl.flock(fd, fcntl.LOCK_SH)
    _held[root] = fd


def release_all() -> None:
    """Release the builders locks this process holds (its doit command has ended)."""
    while _held:
        _, fd = _held.popitem()
        os.close(fd)


@contextmanager
def collecting(store: Store) -> Iterator[None]:
    """Hold `store`'s builders lock exclusively: no build runs on it meanwhile. A build that holds
    it (in any process) is one BuildRunning error, never a wait."""
    fd = os.open(_folder(store) / BUILDERS, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildRunning(f"a build is running on {store.root} (a doit process holds "
                               f"{LOCKS_DIR}/{BUILDERS}): gc removes nothing while one runs, since artifacts it "
                               f"has built are not linked under out/ until it ends. Run doit gc again when it "
                               f"has finished") from None
        yield
    finally:
        os.close(fd)
