"""`doit diff`: two resolved configurations compared, with the stages the change rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

from doit.cmd_base import Command
from doit.exceptions import InvalidCommand

from ..config.compose import compose
from ..errors import LlmbuildError
from ..facts.secrets import redact_override
from ..plan.graph import build_plan
from ..review import diff, git
from . import session
from .cmd_base import project_root


def _plan(root: Path, args: list[str], revision: str | None):
    store = f"store={root / 'build'}"  # shares the digest cache; nothing is built
    if revision is None:
        return build_plan(compose(root, [*args, store]), root, strict=False)
    with git.project_at(root, revision) as old_root:
        return build_plan(compose(old_root, [*args, store]), old_root, strict=False)


class Diff(Command):
    name = "diff"
    doc_purpose = "compare two resolved configurations: changed keys and the stages they rebuild"
    doc_usage = "[recipe=A] [overrides] [other=B | base=GIT-REV] [format=md|json]"
    doc_description = ("  doit diff recipe=demo other=toolcall-qwen7b   two recipes\n"
                       "  doit diff recipe=demo lora.r=16                 the recipe against overrides\n"
                       "  doit diff recipe=demo base=main                 the same recipe at a git revision\n"
                       "Markdown is ready for a pull-request comment; format=json for tools.")

    def execute(self, params, args):
        root = project_root()
        given = session.overrides(args)
        other, revision = session.take(given, "other"), session.take(given, "base")
        fmt = session.take(given, "format") or "md"
        recipe_args = [a for a in given if a.startswith(("recipe=", "recipes="))]
        rest = [a for a in given if a not in recipe_args]
        if other and revision:
            raise InvalidCommand("give either other=RECIPE or base=GIT-REVISION, not both")
        if revision:  # the same overrides, then and now
            sides = ((given, revision), (given, None))
        elif other:   # two recipes under the same overrides
            sides = ((given, None), ([*rest, f"recipe={other}"], None))
        else:         # the recipe as committed against the recipe plus overrides
            sides = ((recipe_args, None), (given, None))
        try:
            before, after = (_plan(root, args_, rev) for args_, rev in sides)
        except LlmbuildError as err:
            raise InvalidCommand(str(err)) from None
        labels = tuple((" ".join(map(redact_override, args_)) or "(defaults)") + (f" @ {rev}" if rev else "")
                       for args_, rev in sides)
        document = diff.diff_document(before, after, labels)
        if fmt == "json":
            print(json.dumps(document, indent=2, ensure_ascii=False, default=str))
        elif fmt == "md":
            print(diff.diff_markdown(document), end="")
        else:
            raise InvalidCommand(f"format={fmt!r}: use md or json")
        return 0
