"""Where the tools' own virtual environments are (facts/tool_envs.py) and what is installed in them,
read from their package metadata without starting them (milliseconds: planning reads them for keys)."""

from __future__ import annotations

import importlib.metadata
import os
from functools import lru_cache
from pathlib import Path

from ..facts.tool_envs import ToolEnv


def folder(env: ToolEnv, root: Path) -> Path:
    configured = os.environ.get(env.variable)
    return Path(configured).expanduser() if configured else Path(root) / env.folder


def python_path(env: ToolEnv, root: Path) -> Path:
    return folder(env, root) / "bin" / "python"


def versions(env: ToolEnv, root: Path) -> dict[str, str | None]:
    """The versions of env.needs and env.versions installed there (None: not installed)."""
    return dict(_versions(str(folder(env, root)), tuple(dict.fromkeys((*env.needs, *env.versions)))))


def available(env: ToolEnv, root: Path) -> bool:
    found = versions(env, root)
    return python_path(env, root).exists() and any(found.get(name) for name in env.needs)


def missing_message(env: ToolEnv, root: Path) -> str:
    where = folder(env, root)
    state = "is missing" if not where.exists() else f"has no {' or '.join(env.needs)}"
    return (f"{env.purpose} needs its own environment, and {where} {state}. Make it from the project root: "
            f"{env.setup} (or point {env.variable} at one)")


@lru_cache(maxsize=None)
def _versions(where: str, names: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    paths = [str(p) for p in sorted(Path(where).glob("lib/python*/site-packages"))]
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=paths) if paths else ():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        found.setdefault(name, dist.version)
    return tuple((name, found.get(name.lower().replace("_", "-"))) for name in names)
