"""The Hydra overrides of this doit invocation.

doit turns every `key=value` argument into a command-line variable before dodo.py is loaded
(`doit.get_var`); Hydra forms without `=` (`~smoke`) reach our commands as positional arguments.
Both are collected here, in command-line order, and handed to Hydra unchanged.
"""

from __future__ import annotations

from doit import doit_cmd

_positional: list[str] = []


def add_positional(args: list[str]) -> None:
    _positional.extend(args)


def current() -> list[str]:
    variables = doit_cmd._CMDLINE_VARS or {}  # doit keeps them in this module-level dict, in order
    return [f"{name}={value}" for name, value in variables.items()] + list(_positional)


def take(name: str) -> str | None:
    """Remove a command's own `name=value` argument, so that Hydra never sees it."""
    variables = doit_cmd._CMDLINE_VARS or {}
    return variables.pop(name, None)
