"""`<store>/out/<variant>/`: a variant's outputs under readable names, as relative links into the
content-addressed store, beside its resolved config and a record of what it links. Re-linked when
the record differs, so the folder never describes another configuration."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..facts.layout import OUT_CONFIG, OUT_RECORD
from ..files.atomic import write_atomic


def is_current(folder: Path, record: dict[str, Any]) -> bool:
    try:
        return json.loads((Path(folder) / OUT_RECORD).read_text(encoding="utf-8")) == record
    except (OSError, ValueError):
        return False


def publish(folder: Path, links: dict[str, Path], config_text: str, record: dict[str, Any]) -> None:
    """Replace `folder` with links named as in `links`, the config text and the record (last,
    so that an interrupted publish is not current)."""
    folder = Path(folder)
    remove(folder)
    folder.mkdir(parents=True)
    for name, target in links.items():
        os.symlink(os.path.relpath(target, folder), folder / name)
    write_atomic(folder / OUT_CONFIG, config_text)
    write_atomic(folder / OUT_RECORD, json.dumps(record, indent=2) + "\n")


def remove(folder: Path) -> None:
    """doit clean: remove a variant's readable links (not the artifacts they point to)."""
    shutil.rmtree(folder, ignore_errors=True)
