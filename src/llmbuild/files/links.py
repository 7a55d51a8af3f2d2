"""File helpers shared by stages."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no second copy of gigabytes) where the filesystem allows, else a copy."""
    if source.is_dir():
        target.mkdir()
        for item in source.iterdir():
            link_or_copy(item, target / item.name)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
