"""Compose and plan once per doit invocation; commands read the result afterwards."""

from __future__ import annotations

from pathlib import Path

from doit.exceptions import InvalidDodoFile

from ..config.compose import compose_many, expand_sweep
from ..errors import ConfigError, LlmbuildError
from ..plan.graph import Plan, build_plan
from . import overrides

# set by a command before dodo.py is loaded: "build" refuses sweeps, "sweep" expands them,
# anything else (list, info, clean, forget, plan) accepts both
mode = "any"
plans: list[Plan] = []


def plan_current(root: Path) -> list[Plan]:
    """The plans for this command line; user errors become doit's clean `ERROR: ...` exit 3."""
    try:
        plans[:] = make_plans(root, overrides.current(), mode)
    except LlmbuildError as err:
        raise InvalidDodoFile(str(err)) from None
    return plans


def make_plans(root: Path, args: list[str], how: str = "any", strict: bool = True) -> list[Plan]:
    """Not strict: input files that are not there yet are planned as missing (`doit size`)."""
    swept, variants = expand_sweep(root, args)
    if swept and how == "build":
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
