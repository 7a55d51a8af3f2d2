"""`doit size`: parameters, LoRA size, and training and inference memory, without loading the model."""

from __future__ import annotations

import json

from doit.cmd_base import Command
from doit.exceptions import InvalidCommand

from ..errors import LlmbuildError
from ..facts import layout
from ..plan import outputs
from ..plan.graph import Plan
from ..sizing.report import render
from ..sizing.shape import find_shape
from . import session
from .cmd_base import project_root


def size_text(plan: Plan) -> str:
    base_dir = outputs.artifact(plan, "base") if "base" in plan.nodes else None
    return render(plan.composed.cfg, find_shape(plan.composed.cfg.model, plan.root, base_dir), plan.variant,
                  built_quants(plan))


def built_quants(plan: Plan) -> dict[str, dict]:
    """The quantize.json of each GGUF type this plan has built already (its bits per weight as written,
    llama.cpp's fallbacks included), by slot name: quant.type's, the ladder's and those without an
    importance matrix."""
    found = {}
    for slot, node in plan.nodes.items():
        record = outputs.artifact(plan, slot) / layout.QUANTIZE_RECORD
        if node.stage == "quantize" and record.is_file():
            name = plan.composed.cfg.quant.type if slot == "quantize" else slot.partition("@")[2]
            found[name] = json.loads(record.read_text(encoding="utf-8"))
    return found


class Size(Command):
    name = "size"
    doc_purpose = "estimate parameters, LoRA size, and training and inference memory, without loading the model"
    doc_usage = "[overrides or sweep]"
    doc_description = ("Example: doit size model=qwen2.5-7b-instruct lora=qv   |   doit size train.gpu_memory_gib=24\n"
                       "The shape comes from model.path (config.json or the GGUF header), the built base model, or\n"
                       "model.shape; the dataset need not be there yet. With train.gpu_memory_gib set, a training\n"
                       "that does not fit gets remedies (shorter samples, smaller batches, checkpointing, QLoRA),\n"
                       "each with its estimate.")

    def execute(self, params, args):
        try:  # planned like `doit plan`, but files that are not there yet do not stop it
            plans = session.make_plans(project_root(), session.overrides(args), strict=False)
            print("\n\n".join(size_text(plan) for plan in plans))
        except LlmbuildError as err:
            raise InvalidCommand(str(err)) from None
        return 0
