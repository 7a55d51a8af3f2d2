"""Readable names for a variant's artifacts: build/out/<variant>/ holds relative links into the
content-addressed store, the resolved config and the stage keys."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import yaml

from . import review
from .naming import gguf_file
from .plan.graph import Plan

RECORD = "keys.json"


def out_dir(plan: Plan) -> Path:
    return plan.store / "out" / plan.variant


def _links(plan: Plan) -> dict[str, Path]:
    cfg = plan.composed.cfg
    path = {slot: plan.store / node.stage / node.key for slot, node in plan.nodes.items()}
    links = {
        "base": path["base"],
        "dataset": path["data"] / "dataset",
        "adapter": path["train"] / "adapter",
        "merged": path["merge"] / "merged",
        gguf_file(cfg.model.name, cfg.quant.convert_type): path["convert"] / gguf_file(cfg.model.name, cfg.quant.convert_type),
        gguf_file(cfg.model.name, cfg.quant.type): path["quantize"] / gguf_file(cfg.model.name, cfg.quant.type),
        "smoke.md": path["smoke"] / "answers.md",
    }
    targets = {"render": "ollama", "vllm": "vllm", "hf": "hf", "eval": "eval", "report": "report",
               "split": "split"}  # stages that exist only when configured
    links.update({name: path[stage] for stage, name in targets.items() if stage in path})
    return links


def _record(plan: Plan) -> dict:
    return {"variant": plan.variant, "keys": {stage: node.key for stage, node in plan.nodes.items()}}


def is_current(plan: Plan) -> bool:
    try:
        return json.loads((out_dir(plan) / RECORD).read_text()) == _record(plan)
    except (FileNotFoundError, ValueError):
        return False


def link_outputs(plan: Plan) -> None:
    target = out_dir(plan)
    remove(plan)
    target.mkdir(parents=True)
    for name, dest in _links(plan).items():
        os.symlink(os.path.relpath(dest, target), target / name)
    resolved = review.resolved(plan.composed)  # secrets masked
    (target / "config.yaml").write_text(
        f"# resolved configuration of {plan.variant}; overrides: {' '.join(plan.composed.overrides) or '(none)'}\n"
        + yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True), encoding="utf-8")
    (target / RECORD).write_text(json.dumps(_record(plan), indent=2) + "\n")


def remove(plan: Plan) -> None:
    """doit clean: remove the variant's readable links (not the artifacts they point to)."""
    shutil.rmtree(out_dir(plan), ignore_errors=True)


def quantized_gguf(plan: Plan) -> Path:
    cfg = plan.composed.cfg
    return plan.store / "quantize" / plan.nodes["quantize"].key / gguf_file(cfg.model.name, cfg.quant.type)


OLLAMA_NAME_MAX = 80  # ollama's types/model/name.go: a model name part is 1 to 80 characters


def ollama_name(plan: Plan) -> str:
    """target.ollama.model_name, else the variant name made valid for Ollama ([a-z0-9._-]). A name
    too long keeps its start and ends with a digest of the whole, so two long sweep variants never
    share an Ollama model."""
    cfg = plan.composed.cfg
    configured = cfg.target.ollama.model_name if cfg.target.ollama else None
    if configured:
        return configured
    name = re.sub(r"[^a-z0-9._-]+", "-", plan.variant.lower()).strip("-.")
    if len(name) <= OLLAMA_NAME_MAX:
        return name
    digest = hashlib.sha256(plan.variant.encode()).hexdigest()[:8]
    return f"{name[:OLLAMA_NAME_MAX - 9].rstrip('-.')}-{digest}"


def summary(plan: Plan) -> str:
    """Where every output of the variant is, for the end of `doit build`."""
    cwd = Path.cwd()
    base = out_dir(plan)

    def show(p: Path) -> str:
        try:
            return str(p.relative_to(cwd))
        except ValueError:
            return str(p)

    cfg = plan.composed.cfg
    quant_name = gguf_file(cfg.model.name, cfg.quant.type)
    rows = [
        ("adapter (LoRA)", base / "adapter"),
        ("merged HF model", base / "merged"),
        (f"GGUF {cfg.quant.convert_type}", base / gguf_file(cfg.model.name, cfg.quant.convert_type)),
        (f"GGUF {cfg.quant.type}", base / quant_name),
        *([(f"GGUF {cfg.quant.type}, split", base / "split")] if "split" in plan.nodes else []),
        *([("Ollama folder", base / "ollama"), ("Modelfile", base / "ollama" / "Modelfile")] if "render" in plan.nodes else []),
        *([("vLLM folder", base / "vllm"), ("vLLM serve script", base / "vllm" / "serve.sh")] if "vllm" in plan.nodes else []),
        *([("HF folder + card", base / "hf" / "model")] if "hf" in plan.nodes else []),
        ("smoke answers", base / "smoke.md"),
        *([("held-out eval", base / "eval" / "eval.json")] if "eval" in plan.nodes else []),
        *([("report", base / "report" / "report.html"), ("report (md)", base / "report" / "report.md")]
          if "report" in plan.nodes else []),
        ("resolved config", base / "config.yaml"),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{plan.variant}: outputs in {show(base)}/"]
    lines += [f"  {label:<{width}}  {show(path)}" for label, path in rows]
    if "render" in plan.nodes:
        lines.append(f"  run it:  ollama create {ollama_name(plan)} -f {show(base / 'ollama' / 'Modelfile')}")
    lines.append(f"  or:      doit serve {' '.join(plan.composed.overrides)}".rstrip())
    return "\n".join(lines)
