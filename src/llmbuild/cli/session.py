"""The plans of one command line: its Hydra overrides (doit's `key=value` variables in
command-line order, then the Hydra forms without `=`, such as `~smoke`, that reach a command as
positional arguments), composed, for a sweep expanded into variants, and planned. Commands and the
task loader call it and keep the result."""

from __future__ import annotations

from pathlib import Path

from ..config.compose import compose_many, expand_sweep
from ..errors import ConfigError
from ..facts.secrets import redact_override
from ..plan.graph import Plan, build_plan
from .doit_private import command_line_variables

# how a command reads a sweep in its overrides
SINGLE = "build"   # one configuration: a sweep is an error that says to use `doit sweep`
SWEEP = "sweep"    # a sweep expands into its variants
ANY = "any"        # either (plan, list, info, clean, forget, report)


def overrides(positional: list[str] | tuple[str, ...] = ()) -> list[str]:
    """This command line's Hydra overrides."""
    return [f"{name}={value}" for name, value in command_line_variables().items()] + list(positional)


def take(args: list[str], name: str) -> str | None:
    """Remove a command's own `name=value` argument from `args` (so that Hydra never sees it) and
    return its value; None when it is not there."""
    for item in list(args):
        if item.startswith(f"{name}="):
            args.remove(item)
            return item.split("=", 1)[1]
    return None


def make_plans(root: Path, args: list[str], how: str = ANY, strict: bool = True) -> list[Plan]:
    """Not strict: input files that are not there yet are planned as missing (`doit size`)."""
    swept, variants = expand_sweep(root, args)
    if swept and how == SINGLE:
        key, value = redact_override(swept[0]).split("=", 1)
        quoted = value.replace("'", "\\'") if not value.startswith(("[", "range(", "choice(")) else "a, b"
        raise ConfigError(f"{' '.join(map(redact_override, swept))} is a sweep; `doit build` builds one "
                          f"configuration. Run `doit sweep {' '.join(map(redact_override, args))}` to build every "
                          f"variant in one graph, or, for one value with a comma in it, quote it for Hydra (and the "
                          f"quotes for the shell): \"{key}='{quoted}'\"")
    if not swept:
        variants = [tuple(args)]
    if swept:  # swept values first, so that variant names show them even when shortened
        keys = {item.split("=", 1)[0] for item in swept}
        variants = [tuple(sorted(v, key=lambda item: item.split("=", 1)[0] not in keys)) for v in variants]
    composed = compose_many(root, variants)
    digests = None
    out = []
    for item in composed:
        plan = build_plan(item, root, digests, strict)
        digests = plan.digests  # one digest cache for the whole sweep
        out.append(plan)
    if digests is not None:
        digests.save()
    return out
