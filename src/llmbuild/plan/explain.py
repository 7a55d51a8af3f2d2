"""Why a stage would run, in the user's terms: which config key changed from what to what, which
upstream artifact changes, which template or tool version changed. Reads only manifests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..facts.layout import MANIFEST, stage_of
from ..store.artifacts import Store, read_manifest
from .graph import Plan


@dataclass(frozen=True)
class StageStatus:
    stage: str
    key: str
    up_to_date: bool
    reasons: tuple[str, ...]
    estimate_seconds: float | None   # from the closest earlier build of this stage


def explain(plan: Plan) -> list[StageStatus]:
    store = Store(plan.store)
    stale: set[str] = set()
    out = []
    for slot, node in plan.nodes.items():
        stage = node.stage
        if store.is_complete(stage, node.key):
            out.append(StageStatus(slot, node.key, True, (), None))
            continue
        stale.add(slot)
        baseline = nearest_manifest(store.root / stage, node.payload)
        if baseline is None:
            reasons = (f"never built: no {stage} artifact in {store.root} yet",)
        else:
            rebuilt = {name for name, up in node.inputs.items() if up in stale}   # inputs by the stage's names
            reasons = tuple(differences(baseline, node.payload, rebuilt)) or ("its output is missing",)
        seconds = baseline.get("seconds") if baseline else None
        out.append(StageStatus(slot, node.key, False, reasons, seconds))
    return out


def nearest_manifest(folder: Path, payload: dict[str, Any]) -> dict[str, Any] | None:
    """The finished artifact of this stage whose inputs differ least (most recent on ties)."""
    manifests = [m for m in (read_manifest(path.parent) for path in folder.glob(f"*/{MANIFEST}")) if m]
    if not manifests:
        return None
    manifests.sort(key=lambda m: m.get("finished", ""), reverse=True)  # min() keeps the first of equals
    return min(manifests, key=lambda m: len(list(_leaf_differences(m, payload))))


def differences(old: dict[str, Any], new: dict[str, Any], stale_upstream: set[str]) -> list[str]:
    reasons = []
    for key, (before, after) in _flat_changes(old.get("config", {}), new["config"]):
        reasons.append(f"{key}: {_show(before)} -> {_show(after)}")
    for name, key in new["upstream"].items():
        if old.get("upstream", {}).get(name) != key:
            reasons.append(f"upstream {name} is rebuilt" if name in stale_upstream
                           else f"upstream {name} differs ({str(old.get('upstream', {}).get(name))[:8]} -> {key[:8]})")
    for name, digest in new["inputs"].items():
        if old.get("inputs", {}).get(name) != digest:
            reasons.append(f"{name} file(s) changed")
    for name, digest in new["templates"].items():
        if old.get("templates", {}).get(name) != digest:
            reasons.append(f"templates/{name} changed")
    for tool, version in new["tools"].items():
        if old.get("tools", {}).get(tool) != version:
            reasons.append(f"{tool} {old.get('tools', {}).get(tool, '?')} -> {version}")
    if old.get("version") != new["version"]:
        reasons.append(f"{new['stage']} stage code version {old.get('version')} -> {new['version']}")
    return reasons


def _leaf_differences(old: dict[str, Any], new: dict[str, Any]):
    for section in ("config", "upstream", "inputs", "templates", "tools"):
        yield from (k for k, _ in _flat_changes(old.get(section, {}), new.get(section, {})))
    if old.get("version") != new.get("version"):
        yield "version"


def _flat_changes(old: Any, new: Any, prefix: str = ""):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            yield from _flat_changes(old.get(key, _ABSENT), new.get(key, _ABSENT), name)
    elif old != new:
        yield prefix, (old, new)


class _Absent:
    def __repr__(self) -> str:
        return "(unset)"


_ABSENT = _Absent()


def _show(value: Any) -> str:
    return repr(value) if not isinstance(value, _Absent) else "(unset)"


def plan_text(plans: list[Plan]) -> str:
    """Text for `doit plan`: per variant, each stage's state and reasons; then what would run."""
    lines = []
    to_run: dict[str, StageStatus] = {}
    for plan in plans:
        statuses = explain(plan)
        lines.append(f"{plan.variant}  (store: {plan.store})")
        width = max(len(s.stage) for s in statuses)
        for status in statuses:
            if status.up_to_date:
                lines.append(f"  {status.stage:<{width}}  {status.key[:8]}  up to date")
                continue
            cost = f"  ~{_duration(status.estimate_seconds)}" if status.estimate_seconds is not None else ""
            lines.append(f"  {status.stage:<{width}}  {status.key[:8]}  STALE{cost}: {status.reasons[0]}")
            lines += [f"  {'':<{width}}            {reason}" for reason in status.reasons[1:]]
            to_run.setdefault(f"{status.stage}:{status.key}", status)
        lines.append("")
    if not to_run:
        lines.append("Nothing to build: every artifact is up to date.")
        return "\n".join(lines)
    per_stage: dict[str, int] = {}
    for status in to_run.values():
        stage = stage_of(status.stage)
        per_stage[stage] = per_stage.get(stage, 0) + 1
    known = [s.estimate_seconds for s in to_run.values() if s.estimate_seconds is not None]
    unknown = len(to_run) - len(known)
    estimate = f"about {_duration(sum(known))} from earlier builds" if known else "no earlier timings"
    if known and unknown:
        estimate += f", plus {unknown} task(s) never timed"
    lines.append("Would run " + ", ".join(f"{n} {stage}" for stage, n in per_stage.items()) + f" ({estimate}).")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"
