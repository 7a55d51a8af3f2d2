"""What llmbuild's doit commands share: the project root, and running (part of) the graph
planned for the command line's Hydra overrides."""

from __future__ import annotations

from pathlib import Path

from doit.cmd_run import Run
from doit.exceptions import InvalidCommand

from ..facts import layout
from ..store import locks
from . import session
from .doit_private import verbosity_given


def project_root() -> Path:
    """The folder with conf/config.yaml and dodo.py: here or above (commands that plan without
    running tasks do not load dodo.py)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / layout.CONF_DIR / layout.PRIMARY_CONFIG).is_file() and (folder / "dodo.py").is_file():
            return folder
    raise InvalidCommand("not inside an llmbuild project (no conf/config.yaml and dodo.py here or above)")


class GraphCommand(Run):
    """A command that runs (part of) the graph generated for its command line's overrides. The task
    loader (cli/loader.py) reads `sweeps` and `hydra_overrides` and sets `plans`."""

    sweeps = session.SINGLE

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hydra_overrides: list[str] | None = None
        self.plans: list = []
        self.verbose = False
        self.jobs_outstanding = False   # launcher.wait=false: jobs were submitted, nothing was built here

    def run_graph(self, params, args, tasks=()) -> int:
        if self.hydra_overrides is None:
            self.hydra_overrides = session.overrides(args)
        # `-v 2` on the command line: every tool's full output, not only the stages' progress and results
        self.verbose = verbosity_given(params) == 2
        try:
            result = super().execute(params, list(tasks))
            if self.jobs_outstanding:
                print("jobs are queued or running (launcher.wait=false): run the same command again to collect "
                      "them; `doit plan` with it shows where each one is")
            return result
        finally:
            locks.release_all()   # the stages took the stores' builders locks: doit gc may run again
