"""`doit report`: build what is stale, then point at a build's report, or write one for a sweep."""

from __future__ import annotations

from doit.exceptions import InvalidCommand

from ..facts import layout
from ..plan import outputs
from . import session, sweep_summary
from .cmd_base import GraphCommand


class Report(GraphCommand):
    name = "report"
    doc_purpose = "build what is stale, then point at the report of a build, or write one report for a sweep"
    doc_usage = "[overrides or sweep]"
    doc_description = ("One configuration: its report.md and report.html (written by the report stage).\n"
                       "A sweep, e.g. doit report lora.r=8,16: every variant's report plus one comparing\n"
                       "them, in build/sweeps/<sweep>/.")

    sweeps = session.ANY

    def execute(self, params, args):
        result = self.run_graph(params, args)
        if result != 0 or not self.plans:
            return result
        plans = [p for p in self.plans if "report" in p.nodes]
        if not plans:
            raise InvalidCommand("eval.enabled is false, so there is no report; drop that override")
        for plan in plans:
            print(f"{plan.variant}: {outputs.out_dir(plan) / 'report' / layout.REPORT_HTML}")
        if len(plans) > 1:
            folder = sweep_summary.write_reports(plans, self.hydra_overrides)
            print(f"sweep report: {folder / layout.REPORT_HTML} and {layout.REPORT_MD}")
        return 0
