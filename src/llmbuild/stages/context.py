"""What a stage gets to work with: exactly what its key covers (plan/view.py builds it)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from ..files.templates import TemplateDir


@dataclass(frozen=True)
class StageContext:
    cfg: DictConfig            # the config values this stage's key hashed (+ its spec's `uses`), nothing else
    key: str                   # this artifact's key
    inputs: dict[str, Path]    # upstream slot -> its finished artifact folder
    out: Path                  # empty folder; becomes <store>/<stage>/<key>/ on success
    templates: TemplateDir     # the files under templates/ that this stage's key hashed
    files: dict[str, Path]     # outside inputs by name (model, dataset), their digests in the key
    credentials: dict[str, str] = field(default_factory=dict, repr=False)  # env vars for tools; in no key or file

    def relative(self, target: Path) -> str:
        """`target` relative to the artifact folder, valid before and after the final rename
        (both live one level below <store>/<stage>/), so written configs run by hand unchanged."""
        return os.path.relpath(target, self.out)

    def say(self, message: str) -> None:
        print(f"  {message}", flush=True)
