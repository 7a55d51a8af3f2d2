"""A variant's readable outputs: which names under `<store>/out/<variant>/` point to which
artifacts, the resolved config shown beside them, and the variant's Ollama model name. Pure: the
store's `published` module writes them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from ..config.compose import as_typed
from ..facts import layout
from ..facts.names import digest, sanitize, shorten
from ..facts.secrets import redact, redact_override
from .graph import Plan


def out_dir(plan: Plan) -> Path:
    return plan.store / layout.OUT_DIR / plan.variant


def artifact(plan: Plan, slot: str) -> Path:
    node = plan.nodes[slot]
    return plan.store / node.stage / node.key


def quantized_gguf(plan: Plan) -> Path:
    cfg = plan.composed.cfg
    return layout.quantized_gguf(artifact(plan, "quantize"), cfg.model.name, cfg.quant.type)


def converted_gguf(plan: Plan) -> Path:
    cfg = plan.composed.cfg
    return layout.converted_gguf(artifact(plan, "convert"), cfg.model.name, cfg.quant.convert_type)


# stages that exist only when configured: their whole artifact, linked under the stage's name
OPTIONAL_LINKS = ("ollama", "vllm", "hf", "eval", "report", "split")


def links(plan: Plan) -> dict[str, Path]:
    """Link name -> the artifact file or folder it points to."""
    out = {
        layout.OUT_BASE: artifact(plan, "base"),
        layout.OUT_DATASET: artifact(plan, "train") / layout.DATASET_DIR,   # the samples as trained
        layout.OUT_ADAPTER: artifact(plan, "train") / layout.ADAPTER,
        layout.OUT_MERGED: artifact(plan, "merge") / layout.MERGED,
        converted_gguf(plan).name: converted_gguf(plan),
        quantized_gguf(plan).name: quantized_gguf(plan),
    }
    if "smoke" in plan.nodes:   # none after continued pretraining alone
        out[layout.OUT_SMOKE] = artifact(plan, "smoke") / layout.SMOKE_MARKDOWN
    out.update({stage: artifact(plan, stage) for stage in OPTIONAL_LINKS if stage in plan.nodes})
    out.update({vllm_checkpoint_link(slot): artifact(plan, slot) / layout.QUANTIZED_MODEL
                for slot, node in plan.nodes.items() if node.stage == "vllm_quant"})
    return out


def vllm_checkpoint_link(slot: str) -> str:
    """`vllm-fp8`: the name under the variant's folder of the checkpoint built at `slot`."""
    return f"vllm-{slot.partition('@')[2]}"


def config_text(plan: Plan) -> str:
    """The resolved configuration (secrets masked) as the variant's config.yaml."""
    resolved = redact(plan.composed.to_container())
    shown = " ".join(redact_override(as_typed(item)) for item in plan.composed.overrides) or "(none)"
    return (f"# resolved configuration of {plan.variant}; overrides: {shown}\n"
            + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))


def record(plan: Plan) -> dict[str, Any]:
    """What the folder shows: its stage keys, and a digest of its config.yaml (which also shows
    keys that no stage reads, such as jobs or store)."""
    return {"variant": plan.variant, "keys": {slot: node.key for slot, node in plan.nodes.items()},
            "config": hashlib.sha256(config_text(plan).encode()).hexdigest()[:16]}


OLLAMA_NAME_MAX = 80  # ollama's types/model/name.go: a model name part is 1 to 80 characters


def ollama_name(plan: Plan) -> str:
    """target.ollama.model_name, else the variant name made valid for Ollama ([a-z0-9._-]). A name
    that changes on the way (upper case, other characters) or is too long keeps its start and ends
    with a digest of the whole, so two variants never share an Ollama model."""
    cfg = plan.composed.cfg
    configured = cfg.target.ollama.model_name if cfg.target.ollama else None
    if configured:
        return configured
    name = sanitize(plan.variant.lower(), allowed=r"a-z0-9._-", strip="-.")
    if name != plan.variant:  # lower case or Ollama's characters lost something: keep apart what they merge
        name = f"{name[:OLLAMA_NAME_MAX - 9].rstrip('-.')}-{digest(plan.variant)}"
    return shorten(name, OLLAMA_NAME_MAX, source=plan.variant, trim="-.")
