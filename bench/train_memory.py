"""Measure LoRA training memory on a GPU and compare it with sizing/train_memory.py's estimate (`doit size`).

Random-initialised models of real shapes (no download), PEFT LoRA with the trainable parameters in
fp32 (as LLaMA-Factory casts them), AdamW, bf16 autocast, transformers' default SDPA attention and
gradient checkpointing per decoder layer: the pieces LLaMA-Factory's SFT puts together, without
its data pipeline. Each configuration runs two steps; the second step's peak is reported.

    PYTHONPATH=src python bench/train_memory.py          # on a machine with a CUDA GPU (about 80 GB)
    PYTHONPATH=src python bench/train_memory.py --qlora MODEL_DIR   # QLoRA rows (needs bitsandbytes)

QLoRA needs weights to quantize, so `--qlora` loads a saved model (bench/random_model.py writes one)
with the BitsAndBytesConfig LLaMA-Factory builds for `quantization_bit: 4` (NF4, double
quantization, bf16 compute and storage) and measures the QLORA_RUNS on it.

Needs torch, transformers and peft (and bitsandbytes for --qlora); llmbuild only for `sizing`
(pure arithmetic and config.json reading).
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from llmbuild.sizing.params import ModelShape, lora_modules, lora_parameters
from llmbuild.sizing.shape import from_hf_config
from llmbuild.sizing.train_memory import GIB, OVERHEAD_BYTES, TrainSetup, train_memory

SHAPES = {
    # the published shapes (conf/model/*.yaml), so the estimate is checked where it matters
    "Qwen2.5-7B": ModelShape(3584, 18944, 28, 28, 4, 152064, False, model_type="qwen2"),
    "Llama-3.2-1B": ModelShape(2048, 8192, 16, 32, 8, 128256, True, head_dim=64, model_type="llama"),
}
RUNS = {  # shape -> (targets, r, setup)
    "Qwen2.5-7B": [
        (["all"], 8, TrainSetup(1, 2048, False)),
        (["all"], 8, TrainSetup(1, 2048, True)),
        (["all"], 8, TrainSetup(2, 2048, False)),
        (["all"], 8, TrainSetup(4, 2048, True)),
        (["q_proj", "v_proj"], 8, TrainSetup(2, 1024, False, lora_dropout=0.1)),
    ],
    "Llama-3.2-1B": [
        (["all"], 16, TrainSetup(4, 1024, False)),
        (["all"], 16, TrainSetup(4, 1024, True)),
        (["all"], 16, TrainSetup(8, 2048, True)),
    ],
}
QLORA_RUNS = [  # (targets, r, setup) on the --qlora model
    (["all"], 8, TrainSetup(1, 2048, True, quantization_bit=4)),
    (["all"], 8, TrainSetup(1, 2048, False, quantization_bit=4)),
    (["all"], 8, TrainSetup(4, 2048, True, quantization_bit=4)),
    (["q_proj", "v_proj"], 8, TrainSetup(2, 1024, False, quantization_bit=4, lora_dropout=0.1)),
]


def build(shape: ModelShape):
    config = AutoConfig.for_model(
        shape.model_type, hidden_size=shape.hidden_size, intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers, num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads, vocab_size=shape.vocab_size,
        tie_word_embeddings=shape.tie_word_embeddings, head_dim=shape.head_size, max_position_embeddings=8192)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    torch.set_default_dtype(torch.float32)
    return model


def load_4bit(model_dir: Path):
    """The model as LLaMA-Factory loads it for `quantization_bit: 4` (model/model_utils/quantization.py)."""
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16,
                                      bnb_4bit_use_double_quant=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_quant_storage=torch.bfloat16)
    return AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quantization, dtype=torch.bfloat16,
                                                device_map={"": torch.cuda.current_device()},
                                                attn_implementation="sdpa")


def step(model, optimizer, ids) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss  # the HF loss: logits upcast to fp32 inside
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure(base, shape: ModelShape, targets, r: int, setup: TrainSetup) -> tuple[int, int]:
    modules = lora_modules(targets)
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=setup.lora_dropout,
                                            target_modules=list(modules), task_type="CAUSAL_LM"))
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == lora_parameters(shape, modules, r), (trainable, lora_parameters(shape, modules, r))
    if setup.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, shape.vocab_size, (setup.batch_size, setup.cutoff_len), device="cuda")
    step(model, optimizer, ids)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step(model, optimizer, ids)
    torch.cuda.synchronize()
    peak, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    if setup.gradient_checkpointing:
        model.gradient_checkpointing_disable()
        model.disable_input_require_grads()
    del optimizer, ids
    model.unload()  # the base model without LoRA layers, for the next run
    gc.collect()
    torch.cuda.empty_cache()
    return peak, reserved


def report(name: str, shape: ModelShape, base, runs) -> None:
    for targets, r, setup in runs:
        modules = lora_modules(targets)
        estimate = train_memory(shape, modules, lora_parameters(shape, modules, r), setup).total - OVERHEAD_BYTES
        peak, reserved = measure(base, shape, targets, r, setup)
        dropout = f", dropout {setup.lora_dropout}" if setup.lora_dropout else ""
        print(f"| {name} | {setup.label}, r={r} {','.join(targets)}{dropout} | "
              f"{setup.batch_size} x {setup.cutoff_len} | "
              f"{'on' if setup.gradient_checkpointing else 'off'} | {estimate / GIB:.2f} | {peak / GIB:.2f} | "
              f"{reserved / GIB:.2f} | {estimate / peak:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qlora", type=Path, metavar="MODEL_DIR",
                        help="measure only the QLoRA rows, on this saved model (its config.json gives the shape)")
    args = parser.parse_args()
    print(torch.cuda.get_device_name(), f"torch {torch.__version__}")
    print("| model | LoRA | batch x cutoff | checkpointing | estimate (no overhead) GiB | measured peak GiB | "
          "reserved GiB | estimate / measured |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    if args.qlora:
        shape = from_hf_config(args.qlora / "config.json")
        models = {args.qlora.name: (shape, lambda: load_4bit(args.qlora), QLORA_RUNS)}
    else:
        models = {name: (shape, lambda shape=shape: build(shape), RUNS[name]) for name, shape in SHAPES.items()}
    for name, (shape, load, runs) in models.items():
        started = time.time()
        base = load()
        report(name, shape, base, runs)
        free, total = torch.cuda.mem_get_info()
        print(f"({name}: {time.time() - started:.0f} s; outside PyTorch's allocator, CUDA context and "
              f"libraries: {(total - free - torch.cuda.memory_reserved()) / GIB:.2f} GiB)", flush=True)
        del base
        gc.collect()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
