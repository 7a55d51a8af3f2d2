"""After a sweep: one row per variant (swept values, final train loss, GGUF size, smoke tokens/s,
output folder), printed and written as CSV and Markdown into the store."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

from ..adapters import llamafactory
from ..config.compose import as_typed
from ..facts import layout
from ..facts.names import sanitize, shorten
from ..facts.secrets import redact_override
from ..files.templates import TemplateDir
from ..plan import outputs
from ..plan.graph import Plan
from ..plan.view import stage_config
from ..report import write_sweep_report
from ..stages.report import variant_report
from ..store.artifacts import Store


def swept_values(plans: list[Plan]) -> list[dict[str, str]]:
    """Per variant, the overrides whose value differs between variants."""
    parsed = [dict(redact_override(as_typed(item)).split("=", 1) for item in p.composed.overrides
                   if "=" in as_typed(item)) for p in plans]
    keys = [k for k in dict.fromkeys(k for row in parsed for k in row)
            if len({row.get(k) for row in parsed}) > 1]
    return [{k: row.get(k, "") for k in keys} for row in parsed]


def rows(plans: list[Plan], finished: set[str] | None = None) -> list[dict[str, object]]:
    """A row per variant of the sweep (`finished`: only these variants, the swept keys still all of them)."""
    out = []
    for plan, values in zip(plans, swept_values(plans), strict=True):
        if finished is not None and plan.variant not in finished:
            continue
        quantized = outputs.quantized_gguf(plan)
        out.append({
            "variant": plan.variant,
            **values,
            "final_train_loss": _final_loss(outputs.artifact(plan, "train") / layout.ADAPTER),
            "gguf_mib": round(quantized.stat().st_size / 2**20, 1) if quantized.is_file() else None,
            "smoke_tokens_per_s": _tokens_per_second(outputs.artifact(plan, "smoke") / layout.SMOKE_ANSWERS)
            if "smoke" in plan.nodes else None,   # no smoke test after continued pretraining alone
            "output": str(outputs.out_dir(plan)),
        })
    return out


def _final_loss(adapter: Path):
    """The last logged training loss; for runs shorter than logging_steps, LLaMA-Factory's average."""
    losses = llamafactory.logged_losses(adapter)
    average = llamafactory.train_results(adapter).get("train_loss")
    value = losses[-1] if losses else average
    return round(value, 4) if value is not None else None


def _tokens_per_second(answers: Path):
    try:
        values = [a["tokens_per_second"] for a in json.loads(answers.read_text()) if a.get("tokens_per_second")]
    except (FileNotFoundError, ValueError):
        return None
    return round(sum(values) / len(values), 1) if values else None


def failures(plans: list[Plan]) -> list[tuple[str, str]]:
    """(variant, why) for each variant the sweep did not finish: the stage that failed, with the
    folder its logs were kept in, or the stage it waits for."""
    found = []
    for plan in plans:
        store = Store(plan.store)
        missing = [(slot, node) for slot, node in plan.nodes.items() if not store.is_complete(node.stage, node.key)]
        if not missing:
            continue
        failed = next(((slot, logs) for slot, node in missing
                       if (logs := store.failed_path(node.stage, node.key)).is_dir()), None)
        if failed:
            found.append((plan.variant, f"{failed[0]} failed; its logs: {failed[1]}/"))
        else:
            found.append((plan.variant, f"not built: {missing[0][0]} did not run (a stage it needs failed, or the "
                                        f"run was stopped)"))
    return found


def markdown(table: list[dict[str, object]]) -> str:
    if not table:
        return ""
    header = list(table[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join("" if row[h] is None else str(row[h]) for h in header) + " |" for row in table]
    return "\n".join(lines) + "\n"


def sweep_name(args: list[str]) -> str:
    """The sweep's folder under <store>/sweeps/: its overrides, credentials left out."""
    shown = [a.replace("=", "-") for a in args if redact_override(a) == a]
    return shorten(sanitize("_".join(shown), allowed=r"\w.,+-") or "sweep", 100)


def write(store: Path, args: list[str], table: list[dict[str, object]]) -> Path:
    folder = store / layout.SWEEPS_DIR / sweep_name(args)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / layout.SWEEP_SUMMARY_CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    title = f"# Sweep: {' '.join(map(redact_override, args))}\n\n"
    (folder / layout.SWEEP_SUMMARY_MD).write_text(title + markdown(table), encoding="utf-8")
    return folder


def write_reports(plans: list[Plan], args: list[str], finished: set[str] | None = None) -> Path:
    """The sweep's report.md / report.html beside its summary: one row per variant (`finished`: only
    these), from the variants' finished train, eval and smoke artifacts."""
    reports, swept = [], swept_values(plans)
    for plan, values in zip(plans, swept, strict=True):
        if finished is not None and plan.variant not in finished:
            continue
        upstream = plan.nodes["report"].payload["upstream"]
        artifacts = {slot: plan.store / plan.nodes[slot].stage / key for slot, key in upstream.items()}
        report = variant_report(stage_config(plan, "report"), artifacts, title=plan.variant)
        reports.append(replace(report, swept=values))
    folder = plans[0].store / layout.SWEEPS_DIR / sweep_name(args)
    folder.mkdir(parents=True, exist_ok=True)
    write_sweep_report(folder, reports, list(swept[0]), TemplateDir(plans[0].root))
    return folder
