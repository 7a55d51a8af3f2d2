"""llmbuild's doit entry point.

The build graph's tasks come from llmbuild's task loader (pyproject.toml: [tool.doit] loader), which
composes the command line's Hydra overrides and plans them; doit then runs what is stale.

    doit build [overrides]      build what is stale (`doit help build`)
    doit list / info / clean / forget [overrides]

Add your own `task_*` functions here: they run beside llmbuild's.
"""

DOIT_CONFIG = {"default_tasks": ["package"], "verbosity": 2}
