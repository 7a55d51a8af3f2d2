"""What a stage gets to work with."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig


@dataclass(frozen=True)
class StageContext:
    cfg: DictConfig            # the whole resolved config (a stage reads only its slice)
    root: Path                 # project root: conf/, templates/, relative dataset paths
    key: str                   # this artifact's key
    inputs: dict[str, Path]    # upstream stage -> its finished artifact folder
    out: Path                  # empty folder; becomes build/<stage>/<key>/ on success

    def relative(self, target: Path) -> str:
        """`target` relative to the artifact folder, valid before and after the final rename
        (both live one level below build/<stage>/), so written configs run by hand unchanged."""
        return os.path.relpath(target, self.out)

    def say(self, message: str) -> None:
        print(f"  {message}", flush=True)
