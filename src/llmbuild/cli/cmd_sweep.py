"""`doit sweep`: every variant of a Hydra sweep in one graph; shared stages run once."""

from __future__ import annotations

from doit.cmd_run import opt_continue

from . import session, sweep_summary
from .cmd_base import GraphCommand


class Sweep(GraphCommand):
    name = "sweep"
    doc_purpose = "build every variant of a Hydra sweep in one graph (shared stages run once)"
    doc_usage = "[doit options] KEY=V1,V2 [KEY=range(a,b,step)] [group=glob(pattern)] ..."
    doc_description = ("Several swept keys give their cartesian product, e.g.\n"
                       "  doit sweep lora.r=8,16,32 quant=q4_k_m,q8_0\n"
                       "Stages whose keys coincide are one task: the base model is imported once,\n"
                       "training runs once per lora.r. Add -n 2 to run independent tasks in parallel.")

    sweeps = session.SWEEP
    # a failed variant stops only what depends on it: every other variant is built (--no-continue: stop)
    cmd_options = tuple({**option, "default": True} if option is opt_continue else option
                        for option in GraphCommand.cmd_options)

    def execute(self, params, args):
        result = self.run_graph(params, args)
        if self.jobs_outstanding:
            return result
        if not self.plans:
            return result
        failed = sweep_summary.failures(self.plans)
        finished = {plan.variant for plan in self.plans} - {variant for variant, _ in failed}
        if finished:
            table = sweep_summary.rows(self.plans, finished)
            folder = sweep_summary.write(self.plans[0].store, self.hydra_overrides, table)
            print()
            print(sweep_summary.markdown(table), end="")
            print(f"summary: {folder / 'summary.md'} and summary.csv")
            if all("report" in p.nodes for p in self.plans):
                folder = sweep_summary.write_reports(self.plans, self.hydra_overrides, finished)
                print(f"sweep report: {folder / 'report.html'}")
        if failed:
            print(f"\n{len(failed)} of {len(self.plans)} variants not built:")
            for variant, why in failed:
                print(f"  {variant}: {why}")
        return result or (1 if failed else 0)
