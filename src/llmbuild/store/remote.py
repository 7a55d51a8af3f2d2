"""The remote artifact cache (`cache.url`): finished artifacts copied to `<url>/<stage>/<key>/`, so
that a build on any machine that reaches the cache takes an artifact someone built instead of
building it again (the key covers everything the artifact holds, so the copy is the artifact).

Sending: every file first, the manifest last and only if the cache has none yet (the first writer
wins): an artifact without its manifest in the cache is not there, so a push that was killed midway
leaves nothing that a build would take. Taking: the manifest first, then each file it lists, each
checked against the manifest's size and sha256 before the folder becomes the artifact; a damaged
copy is one CacheDamaged error and nothing of it is kept.

`objects` is the cache's folder of objects (adapters/object_store.ObjectStore, or anything with its
read/get/put/create)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import StageError
from ..facts.layout import MANIFEST
from .artifacts import Store, read_manifest
from .digests import file_sha256


class CacheDamaged(StageError):
    """The cache's copy of an artifact does not match its manifest."""


def _name(stage: str, key: str, file: str = "") -> str:
    return f"{stage}/{key}/{file}".rstrip("/")


def cached_manifest(objects, stage: str, key: str) -> dict[str, Any] | None:
    """The manifest of the cache's copy of the artifact; None when the cache has no complete copy."""
    data = objects.read(_name(stage, key, MANIFEST))
    if data is None:
        return None
    try:
        manifest = json.loads(data)
    except ValueError:
        raise CacheDamaged(f"the cache's manifest of {stage} {key[:8]} is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("key") != key or not isinstance(manifest.get("files"), dict):
        raise CacheDamaged(f"the cache's manifest of {stage} {key[:8]} is not that artifact's")
    return manifest


def take(store: Store, objects, stage: str, key: str) -> dict[str, Any] | None:
    """Copy the cache's artifact into the store: its manifest, or None when the cache lacks it. The
    caller holds the key's lock."""
    manifest = cached_manifest(objects, stage, key)
    if manifest is None:
        return None
    with store.receiving(stage, key) as tmp:
        for name, entry in manifest["files"].items():
            local = tmp / _inside(name, stage, key)
            local.parent.mkdir(parents=True, exist_ok=True)
            objects.get(_name(stage, key, name), local)
            if local.stat().st_size != entry.get("size") or file_sha256(local) != entry.get("sha256"):
                raise CacheDamaged(f"the cache's copy of {stage} {key[:8]} is damaged: {name} differs from its "
                                   f"manifest (size or sha256); it was not used")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def portable(folder: Path) -> bool:
    """Whether an artifact can be copied to another machine: it links no file outside itself (the
    base stage links a model folder on this disk, which its key covers by content)."""
    return not any(path.is_symlink() for path in folder.rglob("*"))


def send(store: Store, objects, stage: str, key: str) -> int | None:
    """Copy a finished artifact to the cache: the bytes sent, or None when the cache had it (or another
    writer finished first)."""
    folder = store.path(stage, key)
    manifest = read_manifest(folder)
    if manifest is None:
        raise StageError(f"{stage} {key[:8]} is not a finished artifact in {store.root}")
    if cached_manifest(objects, stage, key) is not None:
        return None
    sent = 0
    for name in manifest["files"]:
        objects.put(folder / _inside(name, stage, key), _name(stage, key, name))
        sent += (folder / name).stat().st_size
    created = objects.create(_name(stage, key, MANIFEST), (folder / MANIFEST).read_bytes())
    return sent if created else None


def _inside(name: str, stage: str, key: str) -> PurePosixPath:
    """A manifest's file name, refused if it would leave the artifact's folder."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise CacheDamaged(f"the cache's manifest of {stage} {key[:8]} names a file outside it: {name!r}")
    return path
