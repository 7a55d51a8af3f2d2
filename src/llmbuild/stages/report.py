"""report: report.md and a self-contained report.html for the variant: resolved config, stage keys
and timings, the training loss curve, the quant ladder (size against KLD and perplexity), the
metrics table and side-by-side held-out answers.

The config it shows is its own config view, which is exactly what its key hashed: every group but
the keys that change no artifact (config/schema.py, NOT_BUILT)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..adapters import llamafactory
from ..evaluation import results
from ..facts import layout
from ..facts.secrets import redact
from ..report import write_variant_report
from ..report.variant import VariantReport
from ..store.artifacts import read_manifest
from .context import StageContext


def run(ctx: StageContext) -> None:
    md, html = write_variant_report(ctx.out, variant_report(ctx.cfg, ctx.inputs), ctx.templates)
    ctx.say(f"{md.name} and {html.name} ({html.stat().st_size / 1024:.0f} KiB, opens without network)")


def variant_report(cfg: DictConfig, artifacts: dict[str, Path], title: str | None = None) -> VariantReport:
    """What the report of one build shows, read from its finished artifacts (train, eval, smoke);
    `cfg` is the report stage's config view."""
    manifests = upstream_manifests(artifacts)
    return VariantReport(
        variant=title or _title(cfg),
        config_yaml=OmegaConf.to_yaml(redact(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))),
        stages=[{"stage": m.get("slot", m["stage"]) + _ladder(m), "key": m["key"], "seconds": m.get("seconds"),
                 "built_at": m.get("finished")} for m in manifests],
        train_losses=llamafactory.logged_steps(artifacts["train"] / layout.ADAPTER),
        eval=results.load(artifacts["eval"] / layout.EVAL_RESULTS),
        smoke=json.loads((artifacts["smoke"] / layout.SMOKE_ANSWERS).read_text(encoding="utf-8"))
        if "smoke" in artifacts else [],   # none after continued pretraining alone
        training=training_choices(artifacts["train"]),
    )


def training_choices(train: Path) -> list[str]:
    """What the train stage decided and said in its log (the batch from the memory model, padding and
    packing), from its manifest's record."""
    record = (read_manifest(train) or {}).get("record") or {}
    named = (("batch", "Batch"), ("padding", "Padding"))
    return [f"{label}: {record[key]['why']}" for key, label in named if (record.get(key) or {}).get("why")]


def upstream_manifests(inputs: dict[str, Path]) -> list[dict]:
    """Every artifact this report stands on, from the manifests' upstream keys, in build order."""
    store = next(iter(inputs.values())).parent.parent
    seen: dict[tuple[str, str], dict] = {}

    def visit(stage: str, key: str) -> None:
        if (stage, key) in seen:
            return
        manifest = read_manifest(store / stage / key)
        if manifest is None:
            return
        sources = manifest.get("sources", {})   # input name -> the slot that built it (a pipeline's)
        for name, upstream_key in manifest.get("upstream", {}).items():
            visit(layout.stage_of(sources.get(name, name)), upstream_key)
        seen[(stage, key)] = manifest

    for slot, path in inputs.items():
        visit(layout.stage_of(slot), path.name)
    return list(seen.values())


def _ladder(manifest: dict) -> str:
    quant = manifest.get("config", {}).get("quant.type")
    return f" ({quant})" if manifest["stage"] == "quantize" and quant else ""


def _title(cfg) -> str:
    # the artifact is shared by every variant with this configuration, so it names the build, not a variant
    stages = [*(f"{step.train.stage} on {step.dataset.name}" for step in (cfg.pipeline or {}).values()),
              f"{cfg.train.stage} on {cfg.dataset.name}"]
    return f"{cfg.model.name}, LoRA r={cfg.lora.r} {' then '.join(stages)}, shipped as {cfg.quant.type}"
