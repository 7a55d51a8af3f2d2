"""`doit build`: every stale artifact of one configuration, nothing else."""

from __future__ import annotations

from .cmd_base import GraphCommand
from .summary import summary


class Build(GraphCommand):
    name = "build"
    doc_purpose = "build the configured model: every stale artifact, nothing else"
    doc_usage = "[group=option] [key=value] [+key=value] [~key] ..."
    doc_description = ("Arguments are Hydra overrides of conf/config.yaml, e.g.\n"
                       "  doit build quant=q8_0\n  doit build recipe=toolcall-qwen7b lora.r=16\n"
                       "doit options such as -n 2 (parallel) come before them.")

    def execute(self, params, args):
        result = self.run_graph(params, args)
        if self.jobs_outstanding:
            return result
        if result == 0:
            for plan in self.plans:
                print()
                print(summary(plan))
        return result
