"""`doit size`: a composed configuration's parameter counts and memory estimates, as text, and what
to change on the command line when a training does not fit.

The numbers come from params.py, train_memory.py, infer_memory.py and remedies.py (pure arithmetic;
their notes say what is approximated) and the shape from shape.py; nothing here loads a model.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from omegaconf import DictConfig

from ..errors import ConfigError
from ..facts.distributed import STRATEGIES
from ..facts.quant_types import fallback_text
from .choice import additional_targets, batch_choice, configured_setup
from .infer_memory import inference_memory
from .params import lora_modules, lora_parameters, parameter_count
from .remedies import CHECKPOINTING, FOUR_BIT, SHARDED, SHORTER, SMALLER_BATCHES, TOGETHER, Remedy, remedies
from .shape import ShapeSource
from .train_memory import GIB, TrainMemory, TrainSetup, train_memory

# the config key that sets each TrainSetup field a remedy changes (its command-line override)
OVERRIDE_KEYS = {
    "cutoff_len": "train.cutoff_len",
    "batch_size": "train.per_device_train_batch_size",
    "gradient_accumulation_steps": "train.gradient_accumulation_steps",
    "gradient_checkpointing": "train.gradient_checkpointing",
    "quantization_bit": "lora.quantization_bit",
    "strategy": "train.distributed",
}


def overrides(remedy: Remedy) -> str:
    """The Hydra overrides that apply `remedy`, as a user types them after `doit build`."""
    return " ".join(f"{OVERRIDE_KEYS[field]}={_override_value(value)}" for field, value in remedy.changes.items())


def _override_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def why(remedy: Remedy) -> str:
    """The remedy in words."""
    return {
        SHORTER: "shorter samples: longer ones are truncated",
        SMALLER_BATCHES: "smaller batches, the same effective batch through gradient accumulation",
        CHECKPOINTING: "recompute activations during backward, ~30% slower",
        FOUR_BIT: "QLoRA: the frozen base in 4 bits (bitsandbytes)",
        SHARDED: f"the base weights split across the {remedy.setup.devices} GPUs too",
        TOGETHER: "all of these together",
    }[remedy.kind]


def _count(n: int) -> str:
    return f"{n:>15,}"


def _gib(n: float) -> str:
    return f"{n / GIB:.2f}" if n < 100 * GIB else f"{n / GIB:.0f}"


def _millions(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def render(cfg: DictConfig, found: ShapeSource, variant: str, built: dict[str, dict] | None = None) -> str:
    """`built`: quantize.json of each GGUF type built already, by name."""
    shape = found.shape
    counts = parameter_count(shape)
    modules = lora_modules(list(cfg.lora.target))
    whole = additional_targets(cfg)
    trainable = lora_parameters(shape, modules, cfg.lora.r, cfg.lora.dora, whole)
    lines = [
        f"{variant}: {cfg.model.name}",
        f"  shape from {found.source}",
        f"  {shape.model_type} decoder: {shape.num_hidden_layers} layers, hidden {shape.hidden_size:,}, "
        f"MLP {shape.intermediate_size:,}, {shape.num_attention_heads} attention heads / "
        f"{shape.num_key_value_heads} KV heads of {shape.head_size}, vocabulary {shape.vocab_size:,}"
        + (", q/k/v biases" if shape.qkv_bias else ""),
        "",
        f"Parameters                  {_count(counts.total)}   {_millions(counts.total)}",
    ]
    if counts.output_head:
        lines += [f"  embeddings (embed_tokens)  {_count(counts.embeddings)}",
                  f"  output head (lm_head)      {_count(counts.output_head)}"]
    else:
        lines.append(f"  embeddings (embed_tokens)  {_count(counts.embeddings)}   also the output head (tied)")
    lines.append(f"  decoder blocks             {_count(counts.per_block * counts.blocks)}   "
                 f"{counts.blocks} x {counts.per_block:,}, final norm {counts.final_norm:,}")
    if found.file_parameters is not None and found.file_parameters != counts.total:
        lines.append(f"  note: the GGUF's tensors hold {found.file_parameters:,} parameters; the shape gives "
                     f"{counts.total:,}, so the file has tensors this arithmetic does not know")
    lines += [
        "",
        f"LoRA r={cfg.lora.r} on {', '.join(modules)} (lora.target: [{', '.join(cfg.lora.target)}])"
        + (", DoRA" if cfg.lora.dora else "") + (f", {' and '.join(whole)} trained in full" if whole else ""),
        f"  trainable                  {_count(trainable)}   {100 * trainable / counts.total:.2f}% of the base",
        f"  frozen                     {_count(counts.total)}   the whole base model",
        "",
    ]
    lines += _training(cfg, found, modules, trainable)
    lines += [""] + _inference(cfg, found)
    lines += _built(built or {})
    return "\n".join(line.rstrip() for line in lines)


def _training(cfg: DictConfig, found: ShapeSource, modules, trainable: int) -> list[str]:
    shape, setup = found.shape, configured_setup(cfg)
    try:
        choice, failed = batch_choice(cfg, shape), None
    except ConfigError as err:   # nothing fits: the configured batch and its remedies below
        choice, failed = None, str(err)
    if choice is not None:
        setup = choice.setup
    rows = [None, 4] + ([setup.quantization_bit] if setup.quantization_bit not in (None, 4) else [])
    on = f", each of {setup.devices} GPUs with {setup.strategy}" if setup.devices > 1 else ""
    lines = [f"Training memory per GPU, GiB: batch {setup.batch_size} x cutoff_len {setup.cutoff_len} = "
             f"{setup.tokens:,} tokens (every sample at full length), {cfg.train.optim}{on}",
             "                  no checkpointing   gradient checkpointing"]
    for bits in rows:
        cells = []
        for checkpointing in (False, True):
            variant = replace(setup, quantization_bit=bits, gradient_checkpointing=checkpointing)
            mark = " *" if (bits, checkpointing) == (setup.quantization_bit, setup.gradient_checkpointing) else "  "
            cells.append(f"{_gib(train_memory(shape, modules, trainable, variant).total):>8}{mark}")
        lines.append(f"  {replace(setup, quantization_bit=bits).label:<14}{cells[0]:>12}{cells[1]:>20}")
    memory = train_memory(shape, modules, trainable, setup)
    lines.append(f"  * configured: weights {_gib(memory.weights)}, trainable weights+grads+optimizer "
                 f"{_gib(memory.trainable_state)}, activations {_gib(memory.activations)}, "
                 f"{'fused loss (Liger: no logits)' if setup.fused_loss else 'loss over the vocabulary'} "
                 f"{_gib(memory.loss)}, CUDA overhead {_gib(memory.overhead)}")
    if setup.devices > 1:
        lines += _strategies(shape, modules, trainable, setup)
    if not (cfg.train.bf16 or cfg.train.fp16):
        lines.append("  train.bf16 and train.fp16 are off: on a CPU LLaMA-Factory trains in fp32, about twice "
                     "the weights and activations above")
    budget = cfg.train.gpu_memory_gib
    if failed:
        lines.append(f"  train.auto_batch: {failed}")
    if choice is not None:
        lines.append(f"  train.auto_batch chose {choice.reason}")
    elif budget is None:
        lines.append("  train.gpu_memory_gib is not set: not checked against a GPU")
    elif memory.total <= budget * GIB:
        lines.append(f"  fits train.gpu_memory_gib={budget:g} ({_gib(budget * GIB - memory.total)} GiB to spare)")
    else:
        lines += _remedies(setup, memory, budget,
                           remedies(shape, modules, trainable, setup, round(budget * GIB)))
    return lines


def _strategies(shape, modules, trainable: int, setup: TrainSetup) -> list[str]:
    """The configured training on each strategy, per GPU, and the global batch it makes."""
    lines = [f"  per GPU on {setup.devices} GPUs (train.distributed), configured {setup.label}:"]
    for name in STRATEGIES:
        memory = train_memory(shape, modules, trainable, replace(setup, strategy=name))
        mark = " *" if name == setup.strategy else "  "
        lines.append(f"    {name:<16}{_gib(memory.total):>8}{mark}  weights {_gib(memory.weights)}, trainable "
                     f"state {_gib(memory.trainable_state)}")
    batch = setup.batch_size * setup.gradient_accumulation_steps * setup.devices
    lines.append(f"    global batch {setup.batch_size} x {setup.gradient_accumulation_steps} accumulation x "
                 f"{setup.devices} GPUs = {batch} (x NNODES on several hosts); the split is arithmetic, not "
                 f"measured on several GPUs")
    return lines


def _remedies(setup: TrainSetup, memory: TrainMemory, budget: float, found: list[Remedy]) -> list[str]:
    lines = [f"  TOO BIG for train.gpu_memory_gib={budget:g}: the configured {setup.label} needs about "
             f"{_gib(memory.total)} GiB. Remedies, with the memory each would need:"]
    for remedy in found:
        verdict = "fits" if remedy.memory.total <= budget * GIB else "too big"
        lines.append(f"    {_gib(remedy.memory.total):>7} GiB  {verdict:<7}  {overrides(remedy)}   # {why(remedy)}")
    return lines


def _built(built: dict[str, dict]) -> list[str]:
    """The GGUFs built already: bits per weight as written (quantize.json)."""
    if not built:
        return []
    lines = ["", "Built GGUFs (quantize.json): bits per weight as written, with llama.cpp's fallbacks",
             "  quant                  bits/weight   imatrix   fallback tensors"]
    for name, record in sorted(built.items(), key=lambda item: -(item[1].get("bits_per_weight") or 0)):
        bits = record.get("bits_per_weight")
        lines.append(f"  {name:<22} {bits if bits is not None else float('nan'):>8.2f}      "
                     f"{'yes' if record.get('imatrix') else 'no':<9} {fallback_text(record)}")
    return lines


def _inference(cfg: DictConfig, found: ShapeSource) -> list[str]:
    n_ctx = cfg.prompt.num_ctx
    table = inference_memory(found.shape, n_ctx)
    lines = [f"Inference memory in llama.cpp, GiB: weights + f16 KV cache at prompt.num_ctx={n_ctx} "
             f"({_gib(table[0].kv_cache)} GiB)",
             "  quant     bits/weight   weights     total"]
    for row in table:
        mark = " *" if row.quant == cfg.quant.type else ""
        lines.append(f"  {row.quant:<9} {row.bits:>8.2f}   {_gib(row.weights):>8}  {_gib(row.total):>8}{mark}")
    lines.append("  * quant.type. llama.cpp's compute buffers (a few hundred MiB) come on top.")
    return lines
