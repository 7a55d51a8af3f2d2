"""`doit plan`: what a build or sweep would run, and why, without running anything."""

from __future__ import annotations

from doit.cmd_base import DoitCmdBase

from ..errors import ConfigError
from ..plan import outputs
from ..plan.graph import Plan as BuildPlan
from ..sizing.choice import batch_choice
from ..sizing.shape import find_shape
from . import session
from .plan_text import plan_text


def batch_text(plan: BuildPlan) -> str | None:
    """The batch train.auto_batch chooses (sizing/choice.py, the train stage's function), or why it is
    not known yet; None without auto_batch or a train stage."""
    cfg = plan.composed.cfg
    if "train" not in plan.nodes or not cfg.train.auto_batch:
        return None
    try:
        base_dir = outputs.artifact(plan, "base") if "base" in plan.nodes else None
        found = find_shape(cfg.model, plan.root, base_dir)
        choice = batch_choice(cfg, found.shape)
    except ConfigError as err:
        return f"{plan.variant} train.auto_batch: {err}"
    return f"{plan.variant} train.auto_batch (shape from {found.source}): {choice.reason}"


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
        for text in filter(None, (batch_text(plan) for plan in self.plans)):
            print(text)
        return 0
