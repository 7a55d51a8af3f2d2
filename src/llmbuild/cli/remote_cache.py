"""The remote artifact cache (cache.url) in a doit command: before a stage builds, its artifact is
taken from the cache if the cache has it; after, it is sent there (cache.push). One ObjectStore per
cache for the command; a cache that cannot be reached is one warning and the command goes on
without it (with cache.required=true, an error)."""

from __future__ import annotations

import json
import time

from omegaconf import OmegaConf

from ..adapters.object_store import ObjectStore, Unreachable
from ..errors import LlmbuildError
from ..plan.graph import Plan
from ..store import remote
from ..store.artifacts import Store
from ..store.collect import size_of

_open: dict[tuple[str, str], ObjectStore] = {}
_off: set[tuple[str, str]] = set()   # caches this command found unreachable (warned once)


class CacheUnreachable(LlmbuildError):
    """cache.required=true and the cache cannot be reached."""


def reset() -> None:
    """A new command: reach each cache anew (tests run several commands in one process)."""
    _open.clear()
    _off.clear()


def _settings(plan: Plan):
    return plan.composed.cfg.cache


def _ident(plan: Plan) -> tuple[str, str] | None:
    cache = _settings(plan)
    if cache.url is None:
        return None
    return str(cache.url), json.dumps(OmegaConf.to_container(cache.options), sort_keys=True)


def objects(plan: Plan) -> ObjectStore | None:
    """The plan's cache, reached once; None without one or once it was found unreachable."""
    ident = _ident(plan)
    if ident is None or ident in _off:
        return None
    if ident not in _open:
        try:
            found = ObjectStore(ident[0], json.loads(ident[1]))
            found.check()
        except Unreachable as err:
            _unreachable(plan, err)
            return None
        _open[ident] = found
    return _open[ident]


def check(plans: list[Plan]) -> None:
    """Reach every cache the plans name before any stage runs: an unreachable one is one warning (or,
    with cache.required=true, one error)."""
    for plan in plans:
        objects(plan)


def take(plan: Plan, stage: str, key: str) -> bool:
    """Copy the artifact from the cache into the store if the cache has it (the caller holds the key's
    lock); True when it did."""
    found = objects(plan)
    if found is None:
        return False
    store = Store(plan.store)
    started = time.monotonic()
    try:
        if remote.take(store, found, stage, key) is None:
            return False
    except Unreachable as err:
        _unreachable(plan, err)
        return False
    except remote.CacheDamaged as err:
        print(f"  warning: {err}; building it here. Remove {found.url}/{stage}/{key}/ from the cache to let this "
              f"build replace it", flush=True)
        return False
    size = size_of(store.path(stage, key))
    print(f"  {stage} {key[:8]} taken from the cache {found.url} ({size / 2**20:.1f} MiB in "
          f"{time.monotonic() - started:.1f} s)", flush=True)
    return True


def send(plan: Plan, stage: str, key: str, quiet: bool = False) -> int | None:
    """Copy a finished artifact to the cache (cache.push): the bytes sent; None when nothing was sent
    (no cache, push off, the cache has it, or it links files on this disk)."""
    found = objects(plan)
    store = Store(plan.store)
    if found is None or not _settings(plan).push or not remote.portable(store.path(stage, key)):
        return None
    started = time.monotonic()
    try:
        sent = remote.send(store, found, stage, key)
    except Unreachable as err:
        _unreachable(plan, err)
        return None
    if sent is not None and not quiet:
        print(f"  {stage} {key[:8]} sent to the cache {found.url} ({sent / 2**20:.1f} MiB in "
              f"{time.monotonic() - started:.1f} s)", flush=True)
    return sent


def _unreachable(plan: Plan, err: Unreachable) -> None:
    if _settings(plan).required:
        raise CacheUnreachable(f"the cache {err} (cache.required=true: set it false to build without the cache)")
    ident = _ident(plan)
    if ident not in _off:
        _off.add(ident)
        print(f"  warning: the cache {err}. Building without it (cache.required=true makes this an error)",
              flush=True)
