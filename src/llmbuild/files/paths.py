"""Paths users write in configs: relative ones start at the project root, `~` is the home folder,
and `pkg:<module>/<file>` names a file inside an installed Python package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import ConfigError


def project_path(value: str | Path, root: Path) -> Path:
    """`value` as a path: absolute as given, relative to the project root otherwise."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(root) / path


def resolve_model_path(value: str, root: Path) -> Path:
    """model.path: `pkg:<module>/<file>` -> the file inside an installed package (found without
    importing it); anything else as `project_path`."""
    if value.startswith("pkg:"):
        module, _, relative = value[4:].partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"model.path = {value!r}: the Python package '{module}' is not installed. "
                              f"Install it (pip install {module.replace('_', '-')}) or point model.path at a file.")
        return Path(list(spec.submodule_search_locations)[0]) / relative
    return project_path(value, root)
