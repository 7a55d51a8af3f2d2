"""The text of `doit plan`: per variant, each stage's state and why it is stale, in config terms
(plan/explain.py), with what it will cost (estimates.py); then what would run, and whether the
training can run on this machine."""

from __future__ import annotations

from ..facts.layout import stage_of
from ..plan.explain import StageStatus, explain
from ..plan.graph import Plan
from .cluster import where
from .estimates import Estimate, cannot_run_here, estimate


def plan_text(plans: list[Plan]) -> str:
    lines = []
    to_run: dict[str, tuple[StageStatus, Estimate]] = {}
    warnings: list[str] = []
    for plan in plans:
        statuses = explain(plan)
        lines.append(f"{plan.variant}  (store: {plan.store})")
        width = max(len(s.stage) for s in statuses)
        for status in statuses:
            if status.up_to_date:
                lines.append(f"  {status.stage:<{width}}  {status.key[:8]}  up to date")
                continue
            cost = estimate(plan, status)
            shown = f"~{_duration(cost.seconds)}" if cost.seconds is not None else "time unknown"
            shown += f" ({cost.basis})" if cost.basis else ""
            job = where(plan, stage_of(status.stage), status.key)
            shown = f"{job}, {shown}" if job else shown
            lines.append(f"  {status.stage:<{width}}  {status.key[:8]}  STALE, {shown}: {status.reasons[0]}")
            lines += [f"  {'':<{width}}            {reason}" for reason in status.reasons[1:]]
            to_run.setdefault(f"{status.stage}:{status.key}", (status, cost))
        stale_training = [s for s in statuses if not s.up_to_date and stage_of(s.stage) == "train"]
        problem = cannot_run_here(plan) if stale_training else None
        if problem:
            warnings.append(f"{plan.variant}: the training cannot run on this machine: {problem}.")
        lines.append("")
    if not to_run:
        lines.append("Nothing to build: every artifact is up to date.")
        return "\n".join(lines)
    per_stage: dict[str, int] = {}
    for status, _ in to_run.values():
        stage = stage_of(status.stage)
        per_stage[stage] = per_stage.get(stage, 0) + 1
    known = [cost.seconds for _, cost in to_run.values() if cost.seconds is not None]
    unknown = len(to_run) - len(known)
    if not known:
        total = "time unknown: no earlier build of these stages to time them by"
    else:
        total = f"about {_duration(sum(known))} by earlier builds, scaled to this one's work"
        if unknown:
            total += f", plus {unknown} task(s) of unknown time"
    lines.append("Would run " + ", ".join(f"{n} {stage}" for stage, n in per_stage.items()) + f" ({total}).")
    return "\n".join(lines + warnings)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
