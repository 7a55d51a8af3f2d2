"""A tool's own virtual environment (facts/tool_envs.py, files/envs.py): its Python, or one
ToolError that says how to make the environment."""

from __future__ import annotations

from pathlib import Path

from ..errors import ToolError
from ..facts.tool_envs import ToolEnv
from ..files import envs


def python(env: ToolEnv, root: Path) -> Path:
    """The environment's Python, checked to have what it is for."""
    if not envs.available(env, root):
        raise ToolError(envs.missing_message(env, root))
    return envs.python_path(env, root)
