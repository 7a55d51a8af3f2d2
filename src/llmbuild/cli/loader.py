"""llmbuild's doit task loader (pyproject.toml: [tool.doit] loader = "llmbuild").

It loads dodo.py as doit's own loader does, then adds the tasks of the build graph planned for
the running command's Hydra overrides. doit hands every loader the command it runs (TaskLoader2's
`load_tasks(cmd, pos_args)`): a command of ours says how to read sweeps (`sweeps`) and which
overrides it was given (`hydra_overrides`), and gets the plans back (`plans`); doit's own commands
(list, info, clean, forget) get the overrides of their command line. A command that runs the whole
graph (build, sweep, serve, report) has the train stages' checks run first (tasks.check_before_building),
so that what they refuse stops it before any stage runs.
"""

from __future__ import annotations

from pathlib import Path

from doit.cmd_base import DodoTaskLoader
from doit.cmd_run import Run
from doit.exceptions import InvalidDodoFile
from doit.loader import generate_tasks

from ..errors import LlmbuildError
from ..facts import layout
from . import cluster, remote_cache, session
from .tasks import check_before_building, tasks_for

STATE_DIR = layout.DEFAULT_STORE   # doit's dependency database (pyproject.toml: dep_file)


class LlmbuildLoader(DodoTaskLoader):
    def project_root(self) -> Path:
        return Path(self.namespace["__file__"]).resolve().parent

    def load_doit_config(self):
        config = super().load_doit_config()
        state = self.project_root() / STATE_DIR
        try:
            state.mkdir(exist_ok=True)  # before doit opens its database there
        except OSError as err:
            raise InvalidDodoFile(f"cannot create {state} for doit's database ({err.strerror}): run from a "
                                  f"project folder you can write, or pass --db-file PATH") from None
        return config

    def load_tasks(self, cmd, pos_args):
        tasks = super().load_tasks(cmd, pos_args)  # dodo.py's own task_* functions, if any
        given = getattr(cmd, "hydra_overrides", None)
        remote_cache.reset()
        try:
            plans = session.make_plans(self.project_root(), session.overrides() if given is None else given,
                                       getattr(cmd, "sweeps", session.ANY))
            if hasattr(cmd, "check_plans"):   # what the command needs beyond the build, before it runs
                cmd.check_plans(plans)
            if isinstance(cmd, Run) and not pos_args:   # it runs every stale task, not some it names
                check_before_building(plans)
            if isinstance(cmd, Run):
                remote_cache.check(plans)
            cluster.reset()
            if isinstance(cmd, Run) and not pos_args and cluster.is_cluster(plans) and not cluster.launch(plans):
                cmd.plans, cmd.jobs_outstanding = plans, True   # submitted; the same command collects them
                return tasks + generate_tasks("llmbuild", tasks_for([]))   # the stages' names, no work
        except LlmbuildError as err:  # doit prints it as `ERROR: ...` and exits 3, no traceback
            raise InvalidDodoFile(str(err)) from None
        cmd.plans = plans
        return tasks + generate_tasks("llmbuild", tasks_for(plans, verbose=getattr(cmd, "verbose", False)))
