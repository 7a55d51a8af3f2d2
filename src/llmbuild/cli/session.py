"""Compose and plan once per doit invocation; commands read the result afterwards."""

from __future__ import annotations

from pathlib import Path

from doit.exceptions import InvalidDodoFile

from ..config.compose import compose
from ..errors import LlmbuildError
from ..plan.graph import Plan, build_plan
from . import overrides

plans: list[Plan] = []


def plan_current(root: Path) -> list[Plan]:
    """The plans for this command line; user errors become doit's clean `ERROR: ...` exit 3."""
    try:
        composed = compose(root, overrides.current())
        plans[:] = [build_plan(composed, root)]
    except LlmbuildError as err:
        raise InvalidDodoFile(str(err)) from None
    return plans
