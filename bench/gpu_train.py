"""LLaMA-Factory LoRA SFT speed on whatever GPU is here: its example settings, llmbuild's previous
`train=gpu-bf16` and the new default, on one random Qwen2.5-7B-shaped model, with fixed- and
variable-length samples.

    python bench/gpu_train.py --tokenizer TOKDIR --out OUTDIR [--runs fixed-example,var-packed,...]

Needs LLaMA-Factory 0.9.5 and liger-kernel 0.8.5 importable (shared/gpu/README.md lists the
wheels) and llmbuild's src/ on PYTHONPATH: the new default's batch and packing come from
llmbuild.sizing (`choose_batch`, `packing_choice`), the functions the train stage calls.

It measures the GPU's bf16 matmul rate itself, then runs each configuration in its own process
(Liger patches transformers' classes for the life of a process). Per optimizer step it records the
time (after a device synchronise), the loss, and the tokens the model was given: all of them and
the real ones (not the pad token), from a forward hook. Steady state is the steps after the first
WARMUP (Triton compilation, allocator growth). The share of peak counts 4 x (non-embedding
parameters) FLOPs per real token for LoRA (forward, and backward to the inputs only; the adapters'
own FLOPs are under 1%) plus causal attention over each sample's own length, so padding and the
block-diagonal mask's wasted attention count as lost time, not work.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

WARMUP = 3
SHAPE = dict(hidden=3584, inter=18944, layers=28, heads=28, kv=4, vocab=152064)
WORDS = "alpha beta gamma delta model build quant train merge token layer weight value cache graph".split()


def flops_per_token(mean_len: float) -> float:
    h, i, n, kv = SHAPE["hidden"], SHAPE["inter"], SHAPE["layers"], SHAPE["kv"] * 128
    linear = n * (h * h * 2 + 2 * h * kv + 3 * h * i) + h * SHAPE["vocab"]   # q, o; k, v; MLP; lm_head
    attention = n * 2 * 2 * mean_len / 2 * h        # QK^T and PV, causal: half the square, per token
    return 2 * 2 * (linear + attention)               # forward + backward to the inputs


def peak_tflops() -> float:
    import torch
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn_like(a)
    for _ in range(5):
        a @ b
    torch.cuda.synchronize()
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(50):
            a @ b
        torch.cuda.synchronize()
        best = max(best, 50 * 2 * 8192 ** 3 / (time.perf_counter() - start) / 1e12)
    return best


def make_data(folder: Path, lengths: list[int]) -> None:
    """alpaca rows of about `lengths` tokens each (each word is one token of Qwen2's vocabulary)."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in lengths:
        words = max(n - 12, 8)   # the qwen template adds about a dozen tokens
        rows.append({"instruction": " ".join(rng.choice(WORDS) for _ in range(words // 2)), "input": "",
                     "output": " ".join(rng.choice(WORDS) for _ in range(words - words // 2))})
    (folder / "rows.json").write_text(json.dumps(rows))
    (folder / "dataset_info.json").write_text(json.dumps({"rows": {"file_name": "rows.json"}}))


def variable_lengths(count: int) -> list[int]:
    """Like the tool-calling conversations this project started from: 150 to 2,500 tokens, most short."""
    rng = random.Random(1)
    return [int(min(2500, max(150, rng.lognormvariate(6.4, 0.6)))) for _ in range(count)]


FIXED = [736] * 400
VARIABLE = variable_lengths(600)


def new_default(lengths: list[int], cutoff: int, effective: int, gpu_bytes: int, packing: bool | None,
                seed: int = 42) -> tuple[dict, str]:
    """The new train=gpu-bf16: Liger on, batch from llmbuild's memory model, packing when it pays."""
    from llmbuild.sizing.memory import ModelShape, TrainSetup, choose_batch, lora_modules, lora_parameters
    from llmbuild.sizing.padding import packing_choice
    shape = ModelShape(SHAPE["hidden"], SHAPE["inter"], SHAPE["layers"], SHAPE["heads"], SHAPE["kv"], SHAPE["vocab"],
                       False, model_type="qwen2")
    modules = lora_modules(["all"])
    trainable = lora_parameters(shape, modules, 8)

    def choose(block_mask: bool):
        return choose_batch(shape, modules, trainable, TrainSetup(effective, cutoff, False, fused_loss=True,
                                                                  block_mask=block_mask), gpu_bytes, 0.1)
    padded = choose(False)
    packs = packing_choice(lengths, padded.setup.batch_size, cutoff, seed, packing)
    chosen = choose(True) if packs.pack else padded
    s = chosen.setup
    args = {"per_device_train_batch_size": s.batch_size, "gradient_accumulation_steps": s.gradient_accumulation_steps,
            "disable_gradient_checkpointing": not s.gradient_checkpointing, "enable_liger_kernel": True}
    if packs.pack:
        args["neat_packing"] = True
    return args, f"{chosen.reason}; {packs.reason}; estimate {chosen.memory.total / 2**30:.1f} GiB"


def configurations(gpu_bytes: int) -> dict[str, tuple[list[int], int, dict, str]]:
    example = {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 8}
    previous = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
                "disable_gradient_checkpointing": True}
    runs = {}
    for data, lengths, cutoff in (("fixed", FIXED, 2048), ("var", VARIABLE, 3072)):
        runs[f"{data}-example"] = (lengths, cutoff, example, "LLaMA-Factory example: 1 x 8, checkpointing")
        runs[f"{data}-previous"] = (lengths, cutoff, previous, "previous gpu-bf16: 4 x 2, no checkpointing")
        args, why = new_default(lengths, cutoff, 8, gpu_bytes, None)
        runs[f"{data}-new"] = (lengths, cutoff, args, f"new default: {why}")
    args, why = new_default(VARIABLE, 3072, 8, gpu_bytes, False)
    runs["var-new-padded"] = (VARIABLE, 3072, args, f"new default, packing off: {why}")
    args, why = new_default(FIXED, 2048, 8, gpu_bytes, None)
    runs["fixed-new-compile"] = (FIXED, 2048, {**args, "torch_compile": True}, "new default + torch.compile")
    args, why = new_default(FIXED, 1024, 16, gpu_bytes, None)
    runs["fixed-new-eff16"] = (FIXED, 1024, args, f"new default, effective batch 16, cutoff_len 1024: {why}")
    args, why = new_default(FIXED, 2048, 8, 24 * 2**30, None)
    runs["fixed-new-24gib"] = (FIXED, 2048, {**args, "_memory_gib": 24}, f"new default for a 24 GiB GPU "
                               f"(this process limited to 24 GiB): {why}")
    # what else might pay (issue 14's "go further"): half-precision adapters, a larger rank
    args, why = new_default(FIXED, 2048, 8, gpu_bytes, None)
    runs["fixed-new-purebf16"] = (FIXED, 2048, {**args, "pure_bf16": True}, "new default + pure_bf16 (adapters "
                                  "and AdamW in bf16: no fp32 casts of each adapted module's input)")
    runs["fixed-new-r64"] = (FIXED, 2048, {**args, "lora_rank": 64}, "new default, LoRA r=64")
    args, why = new_default(FIXED, 1024, 16, gpu_bytes, None)
    runs["fixed-eff16-purebf16"] = (FIXED, 1024, {**args, "pure_bf16": True}, "effective batch 16 + pure_bf16")
    return runs


def worker(spec_path: str) -> None:
    import torch
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    spec = json.loads(Path(spec_path).read_text())
    limit = spec["args"].pop("_memory_gib", None)
    if limit:   # a smaller GPU: the caching allocator refuses beyond this share of the card
        torch.cuda.set_per_process_memory_fraction(limit * 2**30 / torch.cuda.get_device_properties(0).total_memory)
    pad_id = spec["pad_id"]
    record = {"steps": [], "losses": {}}
    counts = {"real": 0, "total": 0}

    class Meter(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            def hook(module, positional, named):
                ids = named.get("input_ids", positional[0] if positional else None)
                if ids is not None:
                    counts["real"] += int((ids != pad_id).sum())
                    counts["total"] += ids.numel()
            model.register_forward_pre_hook(hook, with_kwargs=True)
            torch.cuda.synchronize()
            self.last = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            now = time.perf_counter()
            record["steps"].append({"seconds": now - self.last, **counts})
            counts.update(real=0, total=0)
            self.last = now

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                record["losses"][state.global_step] = logs["loss"]

    torch.cuda.reset_peak_memory_stats()
    started = time.time()
    run_exp(args=spec["args"], callbacks=[Meter()])
    record.update(peak_gib=torch.cuda.max_memory_allocated() / 2**30,
                  reserved_gib=torch.cuda.max_memory_reserved() / 2**30, wall=time.time() - started)
    Path(spec["record"]).write_text(json.dumps(record))


def summarise(name: str, record: dict, peak: float, mean_len: float) -> dict:
    steady = record["steps"][WARMUP:]
    seconds = sum(s["seconds"] for s in steady)
    real, total = sum(s["real"] for s in steady), sum(s["total"] for s in steady)
    tps = real / seconds
    return {"run": name, "tokens_s": tps, "peak_share": tps * flops_per_token(mean_len) / (peak * 1e12),
            "padding": 1 - real / total, "peak_gib": record["peak_gib"], "reserved_gib": record["reserved_gib"],
            "losses": record["losses"], "steps": len(record["steps"]), "wall": record["wall"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer")
    parser.add_argument("--out")
    parser.add_argument("--runs", default="")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--budget", type=float, default=540, help="seconds: start no run after budget - 75")
    parser.add_argument("--worker")
    options = parser.parse_args()
    if options.worker:
        return worker(options.worker)
    import torch
    began = time.time()
    out, tmp = Path(options.out), Path("/tmp/gpu_train")
    tmp.mkdir(exist_ok=True)
    gpu = torch.cuda.get_device_properties(0)
    peak = peak_tflops()
    print(f"{gpu.name}, {gpu.total_memory / 2**30:.1f} GiB; bf16 matmul 8192^3: {peak:.0f} TFLOP/s", flush=True)
    model = tmp / "q7b"
    if not (model / "config.json").is_file():
        subprocess.run([sys.executable, str(Path(__file__).with_name("random_model.py")), "--shape", "qwen2.5-7b",
                        "--tokenizer", options.tokenizer, "--out", str(model)], check=True)
    from transformers import AutoTokenizer
    pad_id = AutoTokenizer.from_pretrained(model).pad_token_id
    for data, lengths in (("fixed", FIXED), ("var", VARIABLE)):
        make_data(tmp / data, lengths)
    runs = configurations(gpu.total_memory)
    wanted = [r for r in options.runs.split(",") if r] or list(runs)
    results = []
    for name in wanted:
        if time.time() - began > options.budget - 75:
            print(f"== {name}: skipped, out of time")
            continue
        lengths, cutoff, extra, why = runs[name]
        data = name.split("-")[0]
        args = {"model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
                "lora_target": "all", "lora_rank": 8, "dataset": "rows", "dataset_dir": str(tmp / data),
                "template": "qwen", "cutoff_len": cutoff, "output_dir": str(tmp / f"out-{name}"),
                "overwrite_output_dir": True, "save_strategy": "no", "report_to": "none", "logging_steps": 1,
                "learning_rate": 1e-4, "bf16": True, "preprocessing_num_workers": 8, "max_steps": options.steps,
                "seed": 42, "dataloader_num_workers": 2, **extra}
        spec = tmp / f"{name}.json"
        spec.write_text(json.dumps({"args": args, "pad_id": pad_id, "record": str(tmp / f"{name}.record.json")}))
        print(f"== {name}: {why}\n   {json.dumps(extra)}", flush=True)
        with open(out / f"{name}.log", "w") as log:
            try:
                rc = subprocess.run([sys.executable, __file__, "--worker", str(spec)], stdout=log,
                                    stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                    timeout=max(30, options.budget - (time.time() - began) - 10)).returncode
            except subprocess.TimeoutExpired:
                rc = "timed out"
        if rc:
            print(f"   failed (rc {rc}): " + " | ".join((out / f"{name}.log").read_text().strip().splitlines()[-3:]))
            continue
        result = summarise(name, json.loads((tmp / f"{name}.record.json").read_text()), peak,
                           sum(min(n, cutoff) for n in lengths) / len(lengths))
        result.update(why=why, args=extra)
        results.append(result)
        (out / "results.json").write_text(json.dumps({"gpu": gpu.name, "peak_tflops": peak, "runs": results}, indent=1))
        print(f"   {result['tokens_s']:,.0f} tokens/s, {result['peak_share']:.1%} of peak, padding "
              f"{result['padding']:.1%}, peak {result['peak_gib']:.1f} GiB, wall {result['wall']:.0f} s", flush=True)
    (out / "results.json").write_text(json.dumps({"gpu": gpu.name, "peak_tflops": peak, "runs": results}, indent=1))
    print(f"\n{'run':<20}{'tokens/s':>10}{'% peak':>8}{'x ex.':>7}{'padding':>9}{'peak GiB':>10}"
          "  loss at steps 1, 6, last")
    for r in results:
        base = next((b for b in results if b["run"] == r["run"].split("-")[0] + "-example"), None)
        ratio = r["tokens_s"] / base["tokens_s"] if base else float("nan")
        losses = r["losses"]
        marks = [losses.get(k) for k in ("1", "6", str(r["steps"]))] if losses else []
        shown = " ".join(f"{x:.4f}" if x is not None else "-" for x in marks)
        print(f"{r['run']:<20}{r['tokens_s']:>10,.0f}{r['peak_share']:>8.1%}{ratio:>7.2f}{r['padding']:>9.1%}"
              f"{r['peak_gib']:>10.1f}  {shown}")


if __name__ == "__main__":
    main()
