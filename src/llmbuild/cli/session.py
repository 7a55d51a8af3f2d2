"""The plans of one command line: its Hydra overrides composed (and, for a sweep, expanded into
variants) and planned. Pure: commands and the task loader call it and keep the result."""

from __future__ import annotations

from pathlib import Path

from ..config.compose import compose_many, expand_sweep
from ..errors import ConfigError
from ..plan.graph import Plan, build_plan

# how a command reads a sweep in its overrides
SINGLE = "build"   # one configuration: a sweep is an error that says to use `doit sweep`
SWEEP = "sweep"    # a sweep expands into its variants
ANY = "any"        # either (plan, list, info, clean, forget, report)


def make_plans(root: Path, args: list[str], how: str = ANY, strict: bool = True) -> list[Plan]:
    """Not strict: input files that are not there yet are planned as missing (`doit size`)."""
    swept, variants = expand_sweep(root, args)
    if swept and how == SINGLE:
        raise ConfigError(f"{' '.join(swept)} is a sweep; `doit build` builds one configuration. "
                          f"Run `doit sweep {' '.join(args)}` to build every variant in one graph.")
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
