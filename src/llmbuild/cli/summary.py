"""The end of `doit build`: where every output of a variant is, and how to run it."""

from __future__ import annotations

from pathlib import Path

from ..config.compose import as_typed
from ..facts import layout
from ..facts.secrets import redact_override
from ..plan import outputs
from ..plan.graph import Plan


def summary(plan: Plan) -> str:
    cwd = Path.cwd()
    base = outputs.out_dir(plan)

    def show(p: Path) -> str:
        try:
            return str(p.relative_to(cwd))
        except ValueError:
            return str(p)

    cfg = plan.composed.cfg
    rows = [
        ("adapter (LoRA)", base / layout.OUT_ADAPTER),
        ("merged HF model", base / layout.OUT_MERGED),
        (f"GGUF {cfg.quant.convert_type}", base / outputs.converted_gguf(plan).name),
        (f"GGUF {cfg.quant.type}", base / outputs.quantized_gguf(plan).name),
        *([(f"GGUF {cfg.quant.type}, split", base / "split")] if "split" in plan.nodes else []),
        *([("Ollama folder", base / "ollama"), ("Modelfile", base / "ollama" / layout.MODELFILE)]
          if "ollama" in plan.nodes else []),
        *([("vLLM folder", base / "vllm"), ("vLLM serve script", base / "vllm" / layout.SERVE_SCRIPT)]
          if "vllm" in plan.nodes else []),
        *[(f"vLLM {slot.partition('@')[2]}", base / outputs.vllm_checkpoint_link(slot))
          for slot, node in plan.nodes.items() if node.stage == "vllm_quant"],
        *([("HF folder + card", base / "hf" / layout.HF_MODEL)] if "hf" in plan.nodes else []),
        *([("smoke answers", base / layout.OUT_SMOKE)] if "smoke" in plan.nodes else []),
        *([("held-out eval", base / "eval" / layout.EVAL_RESULTS)] if "eval" in plan.nodes else []),
        *([("report", base / "report" / layout.REPORT_HTML), ("report (md)", base / "report" / layout.REPORT_MD)]
          if "report" in plan.nodes else []),
        ("resolved config", base / layout.OUT_CONFIG),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{plan.variant}: outputs in {show(base)}/"]
    lines += [f"  {label:<{width}}  {show(path)}" for label, path in rows]
    if "ollama" in plan.nodes:
        modelfile = show(base / "ollama" / layout.MODELFILE)
        lines.append(f"  run it:  ollama create {outputs.ollama_name(plan)} -f {modelfile}")
    typed = (redact_override(as_typed(item)) for item in plan.composed.overrides)
    lines.append(f"  or:      doit serve {' '.join(typed)}".rstrip())
    return "\n".join(lines)
