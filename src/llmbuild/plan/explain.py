"""Why a stage would run, in the user's terms: which config key changed from what to what, which
upstream artifact changes, which template or tool version changed. Reads only manifests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..facts.layout import MANIFEST
from ..store.artifacts import Store, read_manifest
from .graph import Plan


@dataclass(frozen=True)
class StageStatus:
    stage: str
    key: str
    up_to_date: bool
    reasons: tuple[str, ...]
    baseline: dict[str, Any] | None = None   # the manifest of the closest earlier build of this stage

    @property
    def earlier_seconds(self) -> float | None:
        """How long that earlier build took (not scaled to this one: cli/estimates.py does that)."""
        return self.baseline.get("seconds") if self.baseline else None


def explain(plan: Plan) -> list[StageStatus]:
    store = Store(plan.store)
    stale: set[str] = set()
    out = []
    for slot, node in plan.nodes.items():
        stage = node.stage
        if store.is_complete(stage, node.key):
            out.append(StageStatus(slot, node.key, True, ()))
            continue
        stale.add(slot)
        baseline = nearest_manifest(store.root / stage, node.payload)
        if baseline is None:
            reasons = (f"never built: no {stage} artifact in {store.root} yet",)
        else:
            rebuilt = {name for name, up in node.inputs.items() if up in stale}   # inputs by the stage's names
            reasons = tuple(differences(baseline, node.payload, rebuilt)) or ("its output is missing",)
        out.append(StageStatus(slot, node.key, False, reasons, baseline))
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
    reasons += _template_changes(old.get("templates", {}), new["templates"])
    for tool, version in new["tools"].items():
        if old.get("tools", {}).get(tool) != version:
            reasons.append(f"{tool} {old.get('tools', {}).get(tool, '?')} -> {version}")
    if old.get("version") != new["version"]:
        reasons.append(f"{new['stage']} stage code version {old.get('version')} -> {new['version']}")
    return reasons


def _template_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """A template edited in place, or one template taken instead of another (the chat format
    switched from chat/chatml.jinja to chat/qwen.jinja): said as what happened."""
    edited = [f"templates/{name} changed" for name in new if name in old and old[name] != new[name]]
    gone, added = [n for n in old if n not in new], [n for n in new if n not in old]
    switched = [f"templates/{before} -> templates/{after}" for before, after in zip(gone, added, strict=False)]
    rest = [f"templates/{n} is used" for n in added[len(gone):]] + [f"templates/{n} is no longer used"
                                                                     for n in gone[len(added):]]
    return edited + switched + rest


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
