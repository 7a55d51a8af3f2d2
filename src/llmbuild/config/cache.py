"""A disk cache of Hydra compositions, one per config-group selection.

Hydra needs about 0.2 s per composition; a sweep over config groups or a repeated `doit plan`
would pay it again and again. An entry is valid while every YAML file under conf/ and recipes/,
the schema and the library versions are unchanged (checked by size and mtime, like doit's own
up-to-date check), so a cached composition is exactly what Hydra would compose now.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import llmbuild

from ..facts import layout, quant_types
from ..files.atomic import write_atomic
from . import schema


def _fingerprint(root: Path, groups: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for dist in ("hydra-core", "omegaconf"):
        digest.update(importlib.metadata.version(dist).encode())
    digest.update(llmbuild.__version__.encode())
    # rglob does not descend into the conf/recipes -> recipes/ link: the recipes are listed themselves
    configs = {*(root / layout.CONF_DIR).rglob("*.yaml"), *(root / layout.RECIPES_DIR).rglob("*.yaml")}
    files = [Path(schema.__file__), Path(quant_types.__file__), *sorted(configs)]   # the quant group's options
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(path.anchor)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(json.dumps(groups).encode())
    return digest.hexdigest()[:24]


class CompositionCache:
    def __init__(self, root: Path):
        self.root = root
        self.folder = root / layout.DEFAULT_STORE / ".cache" / "compose"

    def get(self, groups: tuple[str, ...]) -> tuple[DictConfig, dict[str, Any]] | None:
        try:
            entry = json.loads((self.folder / f"{_fingerprint(self.root, groups)}.json").read_text())
        except (OSError, ValueError):
            return None
        cfg = OmegaConf.merge(OmegaConf.structured(schema.BuildConfig), entry["cfg"])
        OmegaConf.set_struct(cfg, True)
        return cfg, entry["choices"]

    def put(self, groups: tuple[str, ...], cfg: DictConfig, choices: dict[str, Any]) -> None:
        entry = {"cfg": OmegaConf.to_container(cfg, resolve=False, enum_to_str=True), "choices": choices}
        try:
            write_atomic(self.folder / f"{_fingerprint(self.root, groups)}.json", json.dumps(entry))
        except OSError:
            pass  # a read-only checkout still composes, only slower
