"""`doit plan`: what a build or sweep would run, and why, without running anything."""

from __future__ import annotations

from doit.cmd_base import DoitCmdBase

from ..plan.explain import plan_text
from . import session


class Plan(DoitCmdBase):
    name = "plan"
    doc_purpose = "show what a build or sweep would run, and why, without running anything"
    doc_usage = "[overrides or sweep]"
    doc_description = "Example: doit plan quant=q5_k_m   |   doit plan lora.r=8,16,32 quant=q4_k_m,q8_0"
    cmd_options = ()
    sweeps = session.ANY

    def execute(self, params, args):
        self.hydra_overrides = session.overrides(args)
        self.plans = []
        return super().execute(params, [])  # the task loader plans and sets self.plans

    def _execute(self):
        print(plan_text(self.plans))
        return 0
