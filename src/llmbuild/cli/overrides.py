"""The Hydra overrides of a command line: doit's `key=value` variables, in command-line order, then
the Hydra forms without `=` (`~smoke`) that reach a command as positional arguments."""

from __future__ import annotations

from .doit_private import command_line_variables


def from_command_line(positional: list[str] | tuple[str, ...] = ()) -> list[str]:
    return [f"{name}={value}" for name, value in command_line_variables().items()] + list(positional)


def take(args: list[str], name: str) -> str | None:
    """Remove a command's own `name=value` argument from `args` (so that Hydra never sees it) and
    return its value; None when it is not there."""
    for item in list(args):
        if item.startswith(f"{name}="):
            args.remove(item)
            return item.split("=", 1)[1]
    return None
