"""Shared fixtures: the project root, composing configs, and a planner that reads no model file."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbuild.config.compose import compose
from llmbuild.plan.graph import build_plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def plan_for(tmp_path):
    """Plan a configuration with the store in a temporary folder."""

    def make(*overrides: str):
        return build_plan(compose(ROOT, [f"store={tmp_path / 'store'}", *overrides]), ROOT)

    return make
