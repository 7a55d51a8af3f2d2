"""The content-addressed artifact store: `<store>/<stage>/<key>/`.

An artifact is complete when its `manifest.json` exists: it is built in a temporary folder beside
its final place and renamed there in one step, so a crash, an error or Ctrl-C never leaves a
folder that a later build would trust.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import LlmbuildError, StageError
from ..facts.layout import MANIFEST
from .digests import file_sha256

FAILED_SUFFIX = ".failed"
RESUME_SUFFIX = ".resume"          # <stage>/.<key>.resume: a stage's resumable state (training checkpoints)
TMP_INFIX = ".tmp-"                 # <stage>/.<key>.tmp-<host>-<pid>: a build in progress
HOST = socket.gethostname()        # builds on several hosts share a store: a pid is checked on its host


class DiskFull(StageError):
    """The store's disk filled up during a build."""


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def failed_path(self, stage: str, key: str) -> Path:
        """Where the last failed build of the key left what its tools wrote (no build trusts it)."""
        return self.root / stage / f"{key}{FAILED_SUFFIX}"

    def resume_path(self, stage: str, key: str) -> Path:
        """Where a build of the key keeps what lets a later build of it go on (a training's checkpoints)
        when it is killed or preempted: never an artifact; the key's finished build removes it."""
        return self.root / stage / f".{key}{RESUME_SUFFIX}"

    def is_complete(self, stage: str, key: str) -> bool:
        return (self.path(stage, key) / MANIFEST).is_file()

    def manifest(self, stage: str, key: str) -> dict[str, Any] | None:
        return read_manifest(self.path(stage, key))

    @contextmanager
    def building(self, stage: str, key: str, manifest: dict[str, Any]) -> Iterator[Path]:
        """Yield an empty folder to build into; on success it becomes the artifact, else it goes."""
        final = self.path(stage, key)
        tmp = self._temporary(stage, key)
        started = time.time()
        try:
            yield tmp
            manifest = dict(manifest)
            manifest["seconds"] = round(time.time() - started, 3)
            manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            manifest["files"] = {
                str(p.relative_to(tmp)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
                for p in sorted(tmp.rglob("*")) if p.is_file() and not p.is_symlink()
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            if final.exists():  # an incomplete leftover without manifest
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            shutil.rmtree(tmp, ignore_errors=True)   # what was written only takes the space the build needs
            raise DiskFull(f"no space left on the device of {self.root} while building {stage} {key[:8]}; "
                           f"nothing of it was kept. Free space (`doit gc -n` lists what the store can drop) "
                           f"or set store= to a larger disk, then run the same command again") from None
        except LlmbuildError as err:
            # keep what the tools wrote (logs) for inspection, under a name no build trusts
            failed = self.failed_path(stage, key)
            shutil.rmtree(failed, ignore_errors=True)
            os.replace(tmp, failed)
            err.args = tuple(str(a).replace(str(tmp), str(failed)) for a in err.args)
            raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def receiving(self, stage: str, key: str) -> Iterator[Path]:
        """Yield an empty folder to copy a finished artifact into (its files and, last, its manifest);
        on success it becomes the artifact, else it goes."""
        final = self.path(stage, key)
        tmp = self._temporary(stage, key)
        try:
            yield tmp
            if not (tmp / MANIFEST).is_file():
                raise StageError(f"{stage} {key[:8]}: copied without its {MANIFEST}")
            if final.exists():  # an incomplete leftover without manifest
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _temporary(self, stage: str, key: str) -> Path:
        """A new empty folder beside the artifact's place, named for this host and process. The caller
        holds the key's lock (on every host), so any host's leftover of the key is removed first."""
        tmp = self.path(stage, key).parent / f".{key}{TMP_INFIX}{HOST}-{os.getpid()}"
        for leftover in self.leftovers(stage, key, every_host=True):
            shutil.rmtree(leftover, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
        except PermissionError:
            raise StageError(f"cannot write to the store {self.root} (permission denied at {tmp.parent}): "
                             f"set store= to a folder you can write, or fix its permissions") from None
        return tmp

    def leftovers(self, stage: str = "*", key: str = "*", every_host: bool = False) -> list[Path]:
        """Temporary folders of builds that ended without finishing: `<stage>/.<key>.tmp-<host>-<pid>`
        whose process is gone (killed, or the machine restarted), and this process's own from an attempt
        that did not finish. A folder of another live process is in use. A pid can be checked on its own
        host only: another host's folders count only with `every_host` (the caller holds a lock that no
        build on any host holds meanwhile: the key's own, or the store's for gc)."""
        found = []
        for path in sorted(self.root.glob(f"{stage}/.{key}{TMP_INFIX}*")):
            host, pid = builder_of(path)
            if not path.is_dir() or pid is None:
                continue
            if host != HOST:
                if every_host:
                    found.append(path)
            elif pid == os.getpid() or not _alive(pid):
                found.append(path)
        return found

    def elsewhere(self) -> list[Path]:
        """Temporary folders of builds on other hosts (in progress there, or left by a build killed there)."""
        return [path for path in sorted(self.root.glob(f"*/.*{TMP_INFIX}*"))
                if path.is_dir() and builder_of(path)[1] is not None and builder_of(path)[0] != HOST]

    def remove(self, stage: str, key: str) -> None:
        shutil.rmtree(self.path(stage, key), ignore_errors=True)


def builder_of(tmp: Path) -> tuple[str, int | None]:
    """(host, pid) of the build a temporary folder belongs to; the pid is None for a name that is no
    such folder's. Folders named before hosts were (`.tmp-<pid>`) are this host's."""
    owner = tmp.name.rpartition(TMP_INFIX)[2]
    host, _, pid = owner.rpartition("-")
    return (host or HOST), (int(pid) if pid.isdigit() else None)


def read_manifest(artifact: Path) -> dict[str, Any] | None:
    """An artifact's manifest.json; None while it is missing or unreadable (not a finished artifact)."""
    try:
        return json.loads((Path(artifact) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # another user's process
    return True
