"""What the store may delete without breaking a variant: artifacts that no `<store>/out/<variant>/`
references, `.failed` folders, and temporary folders of builds that were killed. Used by
`doit clean` (an artifact another variant uses is kept) and `doit gc` (store-wide)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..facts.layout import MANIFEST, OUT_DIR, OUT_RECORD, stage_of
from .artifacts import FAILED_SUFFIX, RESUME_SUFFIX, Store, builder_of, read_manifest
from .locks import LOCKS_DIR

DAY = 86400
# a preempted training's checkpoints wait for its requeued job or rerun: gc takes them only after this long
RESUME_DAYS = 1.0


def references(root: Path, excluding: frozenset[str] = frozenset()) -> dict[tuple[str, str], list[str]]:
    """(stage, key) -> the variants under <store>/out/ that link it, but those in `excluding`."""
    found: dict[tuple[str, str], list[str]] = {}
    for record_file in sorted((Path(root) / OUT_DIR).glob(f"*/{OUT_RECORD}")):
        variant = record_file.parent.name
        if variant in excluding:
            continue
        try:
            keys = json.loads(record_file.read_text(encoding="utf-8")).get("keys", {})
        except (OSError, ValueError):
            continue
        for slot, key in keys.items():
            found.setdefault((stage_of(slot), key), []).append(variant)
    return found


@dataclass(frozen=True)
class Garbage:
    path: Path
    why: str
    size: int


def size_of(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    return sum(p.stat().st_size for p in files)


def is_store(root: Path) -> bool:
    """Whether `root` is a store llmbuild has built in (every build holds its locks there)."""
    return (Path(root) / LOCKS_DIR).is_dir()


def garbage(root: Path, older_than_days: float = 0.0) -> list[Garbage]:
    """Everything `doit gc` removes: unreferenced artifacts finished more than `older_than_days`
    ago, failed builds' folders, and leftovers of killed builds. Only folders whose manifest is an
    artifact's of that very folder count (its key is the folder's name)."""
    store, used, now = Store(root), references(root), time.time()
    out: list[Garbage] = []
    for manifest_file in sorted(Path(root).glob(f"*/*/{MANIFEST}")):
        artifact = manifest_file.parent
        stage, key = artifact.parent.name, artifact.name
        if stage == OUT_DIR or (stage, key) in used or (read_manifest(artifact) or {}).get("key") != key:
            continue
        age = (now - manifest_file.stat().st_mtime) / DAY
        if age >= older_than_days:
            out.append(Garbage(artifact, f"no variant in {OUT_DIR}/ uses it (built {age:.1f} days ago)",
                               size_of(artifact)))
    for failed in sorted(Path(root).glob(f"*/*{FAILED_SUFFIX}")):
        out.append(Garbage(failed, "logs of a failed build", size_of(failed)))
    for leftover in store.leftovers():
        out.append(Garbage(leftover, "left by a build that was killed", size_of(leftover)))
    for resume in sorted(Path(root).glob(f"*/.*{RESUME_SUFFIX}")):
        age = (now - _newest(resume)) / DAY
        if resume.is_dir() and age >= max(older_than_days, RESUME_DAYS):
            out.append(Garbage(resume, f"checkpoints of a build that did not finish, untouched for {age:.1f} days "
                                       f"(a rerun of its key would have resumed from them)", size_of(resume)))
    return out


def _newest(folder: Path) -> float:
    """The newest modification time in a folder (its checkpoints are written inside it)."""
    return max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.rglob("*") if not p.is_symlink())])


def elsewhere(root: Path) -> list[Garbage]:
    """What gc leaves alone: temporary folders of builds on other hosts, whose processes this host
    cannot see (in progress there, or left by a build killed there)."""
    out = []
    for path in Store(root).elsewhere():
        host, pid = builder_of(path)
        out.append(Garbage(path, f"a build on {host} (pid {pid}), in progress or killed there: run doit gc on "
                                 f"{host} to remove it if it was killed", size_of(path)))
    return out


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
