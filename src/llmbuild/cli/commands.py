"""doit commands added by llmbuild (registered in pyproject.toml under [tool.doit.plugins.command])."""

from __future__ import annotations

from doit.cmd_run import Run

from .. import outputs
from . import overrides, session


class Build(Run):
    name = "build"
    doc_purpose = "build the configured model: every stale artifact, nothing else"
    doc_usage = "[group=option] [key=value] [+key=value] [~key] ..."
    doc_description = ("Arguments are Hydra overrides of conf/config.yaml, e.g.\n"
                       "  doit build quant=q8_0\n  doit build recipe=toolcall-qwen7b lora.r=16\n"
                       "doit options such as -n 2 (parallel) come before them.")

    def execute(self, params, args):
        overrides.add_positional(args)  # Hydra forms without '=' (doit already took the key=value ones)
        result = super().execute(params, [])
        if result == 0:
            for plan in session.plans:
                print()
                print(outputs.summary(plan))
        return result
