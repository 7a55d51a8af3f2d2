"""Config diffs for review: the keys that differ between two resolved configurations and the
stages the change rebuilds, as a document, Markdown for a pull request, or JSON."""

from __future__ import annotations

import json
from typing import Any

from ..config.compose import Composed
from ..facts.layout import stage_of
from ..facts.secrets import redact
from ..plan import pipeline
from ..plan.graph import Plan
from ..plan.stages import ORDER

NOT_LOCKED = ("store", "jobs")  # where and how fast to build, not what is built: not in diffs or locks


def resolved(composed: Composed) -> dict[str, Any]:
    """The fully resolved configuration, secrets replaced by '***'."""
    return redact(composed.to_container())


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def config_changes(before: Composed, after: Composed) -> list[dict[str, Any]]:
    old, new = flatten(resolved(before)), flatten(resolved(after))
    return [{"key": k, "before": old.get(k), "after": new.get(k)}
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and not k.startswith(NOT_LOCKED)]


def _stages(before: Plan, after: Plan) -> list[str]:
    """The slots of both plans in build order: stages, and a pipeline's earlier training stages
    (`train@sft`) where they are; the eval ladder's quants are left to the eval line."""
    slots = [s for s in (*after.nodes, *before.nodes) if s in ORDER or stage_of(s) in pipeline.STEP_STAGES]
    return list(dict.fromkeys(slots))   # plans list their nodes in build order


def _key(plan: Plan, stage: str) -> str | None:
    return plan.nodes[stage].key if stage in plan.nodes else None


def rebuilt_stages(before: Plan, after: Plan) -> list[str]:
    """Stages the `after` configuration builds anew (a target it drops is not rebuilt)."""
    return [s for s in _stages(before, after) if s in after.nodes and _key(before, s) != _key(after, s)]


def diff_document(before: Plan, after: Plan, labels: tuple[str, str]) -> dict[str, Any]:
    rebuild = rebuilt_stages(before, after)
    return {
        "before": labels[0],
        "after": labels[1],
        "changes": config_changes(before.composed, after.composed),
        "rebuild": rebuild,
        "unchanged": [s for s in _stages(before, after) if s not in rebuild and s in after.nodes],
        "keys": {s: {"before": _key(before, s), "after": _key(after, s)} for s in _stages(before, after)},
    }


def diff_markdown(doc: dict[str, Any]) -> str:
    lines = [f"### llmbuild config diff: `{doc['before']}` → `{doc['after']}`", ""]
    if doc["changes"]:
        lines += ["| key | before | after |", "|---|---|---|"]
        lines += [f"| `{c['key']}` | {_cell(c['before'])} | {_cell(c['after'])} |" for c in doc["changes"]]
    else:
        lines.append("No configuration key differs.")
    lines.append("")
    if doc["rebuild"]:
        reused = f" (reused: {', '.join(doc['unchanged'])})" if doc["unchanged"] else ""
        lines.append(f"**Stages that rebuild:** {', '.join(doc['rebuild'])}{reused}")
    else:
        lines.append("**Stages that rebuild:** none, every artifact is shared.")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        text = "(unset)"
    else:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "`" + text.replace("|", "\\|").replace("\n", "\\n") + "`"
