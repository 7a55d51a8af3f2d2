"""sha256 digests of input files, cached by size and mtime (doit's MD5 checker does the same), so
a no-op build of a multi-GB model reads no weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..files.atomic import write_atomic

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DigestCache:
    """sha256 of input files, re-hashed only when size or mtime change."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._entries: dict[str, list] | None = None
        self._dirty = False

    def _load(self) -> dict[str, list]:
        if self._entries is None:
            try:
                self._entries = json.loads(self.path.read_text(encoding="utf-8"))
            except (FileNotFoundError, ValueError):
                self._entries = {}
        return self._entries

    def digest(self, file: Path) -> str:
        file = Path(file).resolve()
        stat = file.stat()
        entries = self._load()
        cached = entries.get(str(file))
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            return cached[2]
        value = file_sha256(file)
        entries[str(file)] = [stat.st_size, stat.st_mtime_ns, value]
        self._dirty = True
        return value

    def fingerprint(self, path: Path) -> str:
        """One digest for a file or a whole folder (relative names + contents)."""
        path = Path(path)
        if path.is_file():
            return self.digest(path)
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not _ignored(p, path)):
            digest.update(str(file.relative_to(path)).encode() + b"\0" + self.digest(file).encode() + b"\0")
        return digest.hexdigest()

    def save(self) -> None:
        if not self._dirty:
            return
        write_atomic(self.path, json.dumps(self._entries))
        self._dirty = False


def _ignored(file: Path, top: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(top).parts)
