"""llmbuild's doit entry point. Thin on purpose: the package composes the configuration and
generates the tasks.

    doit build [overrides]      build what is stale (`doit help build`)
    doit list / info / clean / forget [overrides]
"""

from pathlib import Path

from llmbuild.cli import session
from llmbuild.cli.tasks import tasks_for

ROOT = Path(__file__).resolve().parent
(ROOT / "build").mkdir(exist_ok=True)  # doit's dependency database lives there

DOIT_CONFIG = {"default_tasks": ["package"], "verbosity": 2}


def task_llmbuild():
    yield from tasks_for(session.plan_current(ROOT))
