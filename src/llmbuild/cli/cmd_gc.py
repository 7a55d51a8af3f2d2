"""`doit gc`: store-wide garbage collection."""

from __future__ import annotations

from doit.cmd_base import Command
from doit.exceptions import InvalidCommand

from ..config.compose import compose
from ..errors import LlmbuildError
from ..files.paths import project_path
from ..store import collect, locks
from ..store.artifacts import Store
from . import session
from .cmd_base import project_root

opt_dryrun = {"name": "dryrun", "short": "n", "long": "dry-run", "type": bool, "default": False,
              "help": "list what would be removed, remove nothing"}


class Gc(Command):
    name = "gc"
    doc_purpose = "remove from the store what no variant under build/out/ uses, failed builds and leftovers"
    doc_usage = "[-n] [days=N] [store=PATH]"
    doc_description = ("Artifacts that no build/out/<variant>/ links (older than days=N, default 0), the logs\n"
                       "of failed builds (<key>.failed) and the temporary folders of builds that were killed.\n"
                       "-n lists them with their sizes and removes nothing. Remove a variant's links first\n"
                       "(doit clean <its overrides>) to let gc take its artifacts.")
    cmd_options = (opt_dryrun,)

    def execute(self, params, args):
        given = session.overrides(args)
        days = session.take(given, "days") or "0"
        try:
            older_than = float(days)
        except ValueError:
            raise InvalidCommand(f"days={days!r}: give a number of days, e.g. days=30") from None
        root = project_root()
        try:
            store = project_path(compose(root, given).cfg.store, root)
        except LlmbuildError as err:
            raise InvalidCommand(str(err)) from None
        if not store.is_dir() or not any(store.iterdir()):
            print(f"nothing to remove in {store}")
            return 0
        if not collect.is_store(store):
            raise InvalidCommand(f"store={store} is not an llmbuild store (no {locks.LOCKS_DIR}/ in it, which every "
                                 f"build makes): gc removes nothing there. Check the store= path")
        try:
            with locks.collecting(Store(store)):
                found = collect.garbage(store, older_than)
                for item in found:
                    if not params["dryrun"]:
                        collect.remove(item.path)
                    print(f"  {'would remove' if params['dryrun'] else 'removed'} {item.path} "
                          f"({item.size / 2**20:.1f} MiB): {item.why}")
                for item in collect.elsewhere(store):
                    print(f"  kept {item.path} ({item.size / 2**20:.1f} MiB): {item.why}")
        except locks.BuildRunning as err:
            raise InvalidCommand(str(err)) from None
        total = sum(item.size for item in found) / 2**20
        verb = "would free" if params["dryrun"] else "freed"
        print(f"{len(found)} item(s), {verb} {total:.1f} MiB in {store}" if found else f"nothing to remove in {store}")
        return 0
