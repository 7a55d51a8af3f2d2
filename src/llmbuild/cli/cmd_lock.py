"""`doit lock`: write recipes/NAME.lock.yaml (resolved config, stage keys, tool versions)."""

from __future__ import annotations

from doit.cmd_base import Command
from doit.exceptions import InvalidCommand

from ..errors import LlmbuildError
from ..facts import layout
from ..files.atomic import write_atomic
from ..review import lock
from . import session
from .cmd_base import project_root


class Lock(Command):
    name = "lock"
    doc_purpose = "write recipes/NAME.lock.yaml: resolved config, stage keys and tool versions"
    doc_usage = "recipe=NAME"
    doc_description = ("Commit the lock with the recipe: a change to the recipe, a shared config group,\n"
                       "a template or a tool version then shows in the pull request. pytest fails on a\n"
                       "stale lock.")

    def execute(self, params, args):
        root = project_root()
        given = session.overrides(args)
        recipe = session.take(given, "recipe") or session.take(given, "recipes")
        if not recipe or given:
            raise InvalidCommand("usage: doit lock recipe=NAME (a lock describes the recipe as committed: "
                                 "put other settings into the recipe)")
        try:
            plan = lock.plan_recipe(root, recipe, root / layout.DEFAULT_STORE)
        except LlmbuildError as err:
            raise InvalidCommand(str(err)) from None
        path = lock.lock_path(root, recipe)
        write_atomic(path, lock.lock_text(plan))
        print(f"wrote {path.relative_to(root)}")
        return 0
