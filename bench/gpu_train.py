"""LLaMA-Factory LoRA SFT speed on whatever GPU is here: its example settings, llmbuild's previous
`train=gpu-bf16` (Liger's kernels, eager) and the default (each decoder layer compiled, Liger's fused
loss), on one random Qwen2.5-7B-shaped model, with fixed- and variable-length samples.

    python bench/gpu_train.py --tokenizer TOKENIZER --out OUTDIR [--runs fixed-example,fixed-default,...]

Needs LLaMA-Factory 0.9.5 and liger-kernel 0.8.5 importable (shared/gpu/README.md lists the
wheels) and llmbuild's src/ on PYTHONPATH: the default's batch and packing come from llmbuild.sizing
(`choose_batch`, `packing_choice`), its compiled layers and fused loss from llmbuild's launcher
(adapters/llamafactory_compiled.py), the functions the train stage calls. TOKENIZER: an HF tokenizer
folder or a llama.cpp vocabulary such as ggml-vocab-qwen2.gguf (bench/random_model.py).

It measures the GPU's bf16 matmul rate itself, then runs each configuration in its own process
(Liger patches transformers' classes for the life of a process). Per optimizer step it keeps, on the
device, the loss and the tokens the model was given: all of them and the real ones (not the pad
token), from a forward hook; nothing waits for the GPU inside the steps. Steady state is the steps
after the first WARMUP (Triton and inductor compilation, allocator growth), timed between two
synchronises at its ends. NAME+profile records two steps with torch.profiler instead (not timed).
The share of peak counts 4 x (non-embedding parameters) FLOPs per real token for LoRA (forward, and
backward to the inputs only; the adapters' own FLOPs are under 1%) plus causal attention over each
sample's own length, so padding and the block-diagonal mask's wasted attention count as lost time,
not work.
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

from llmbuild.facts.compile_modes import EAGER, KERNEL, LAYERS, environment

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
                seed: int = 42, fused_loss: bool = True, quantization_bit: int | None = None) -> tuple[dict, str]:
    """Liger on, the batch from llmbuild's memory model, packing when it pays: the LLaMA-Factory arguments
    train=gpu-bf16 chose before its decoder layers were compiled (`default` adds that)."""
    from llmbuild.sizing.choice import choose_batch
    from llmbuild.sizing.padding import packing_choice
    from llmbuild.sizing.params import ModelShape, lora_modules, lora_parameters
    from llmbuild.sizing.train_memory import TrainSetup
    shape = ModelShape(SHAPE["hidden"], SHAPE["inter"], SHAPE["layers"], SHAPE["heads"], SHAPE["kv"], SHAPE["vocab"],
                       False, model_type="qwen2")
    modules = lora_modules(["all"])
    trainable = lora_parameters(shape, modules, 8)

    def choose(block_mask: bool):
        return choose_batch(shape, modules, trainable, TrainSetup(effective, cutoff, False, quantization_bit,
                                                                  fused_loss=fused_loss, block_mask=block_mask),
                            gpu_bytes, 0.1)
    padded = choose(False)
    packs = packing_choice(lengths, padded.setup.batch_size, cutoff, seed, packing)
    chosen = choose(True) if packs.pack else padded
    s = chosen.setup
    args = {"per_device_train_batch_size": s.batch_size, "gradient_accumulation_steps": s.gradient_accumulation_steps,
            "disable_gradient_checkpointing": not s.gradient_checkpointing, "enable_liger_kernel": fused_loss}
    if packs.pack:
        args["neat_packing"] = True
    if quantization_bit:
        args["quantization_bit"] = quantization_bit
    return args, f"{chosen.reason}; {packs.reason}; estimate {chosen.memory.total / 2**30:.1f} GiB"


def default(lengths: list[int], cutoff: int, gpu_bytes: int, quantization_bit: int | None = None) -> tuple[dict, str]:
    """train=gpu-bf16 as the train stage runs it: the batch and packing `new_default` chooses, each decoder
    layer compiled and Liger's fused loss alone (llmbuild's launcher, adapters/llamafactory_compiled.py),
    the Trainer's token count the train stage asks for."""
    args, why = new_default(lengths, cutoff, 8, gpu_bytes, None, quantization_bit=quantization_bit)
    counted = "all" if args.get("neat_packing") else "non_padding"
    return ({**args, "enable_liger_kernel": False, "_fused_loss": True, "_compile_layers": True,
             "include_num_input_tokens_seen": counted, "_env": environment(LAYERS, EAGER)},
            f"train=gpu-bf16, compiled layers (rounding as eager) + Liger's fused loss: {why}")


def configurations(gpu_bytes: int) -> dict[str, tuple[list[int], int, dict, str]]:
    example = {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 8}
    previous = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
                "disable_gradient_checkpointing": True}
    runs = {}
    for data, lengths, cutoff in (("fixed", FIXED, 2048), ("var", VARIABLE, 3072)):
        runs[f"{data}-example"] = (lengths, cutoff, example, "LLaMA-Factory example: 1 x 8, checkpointing")
        runs[f"{data}-previous"] = (lengths, cutoff, previous, "previous gpu-bf16: 4 x 2, no checkpointing")
        args, why = new_default(lengths, cutoff, 8, gpu_bytes, None)
        runs[f"{data}-new"] = (lengths, cutoff, args, f"Liger, eager (train=gpu-bf16 before compiled layers): {why}")
    args, why = new_default(VARIABLE, 3072, 8, gpu_bytes, False)
    runs["var-new-padded"] = (VARIABLE, 3072, args, f"Liger, eager, packing off: {why}")
    args, why = new_default(FIXED, 2048, 8, gpu_bytes, None)
    runs["fixed-new-compile"] = (FIXED, 2048, {**args, "torch_compile": True}, "Liger + torch_compile")
    args, why = new_default(FIXED, 1024, 16, gpu_bytes, None)
    runs["fixed-new-eff16"] = (FIXED, 1024, args, f"Liger, eager, effective batch 16, cutoff_len 1024: {why}")
    args, why = new_default(FIXED, 2048, 8, 24 * 2**30, None)
    runs["fixed-new-24gib"] = (FIXED, 2048, {**args, "_memory_gib": 24}, f"Liger, eager, for a 24 GiB GPU "
                               f"(this process limited to 24 GiB): {why}")
    # what else might pay (issue 14's "go further"): half-precision adapters, a larger rank
    args, why = new_default(FIXED, 2048, 8, gpu_bytes, None)
    runs["fixed-new-purebf16"] = (FIXED, 2048, {**args, "pure_bf16": True}, "Liger + pure_bf16 (adapters "
                                  "and AdamW in bf16: no fp32 casts of each adapted module's input)")
    runs["fixed-new-r64"] = (FIXED, 2048, {**args, "lora_rank": 64}, "Liger, eager, LoRA r=64")
    args, why = new_default(FIXED, 1024, 16, gpu_bytes, None)
    runs["fixed-eff16-purebf16"] = (FIXED, 1024, {**args, "pure_bf16": True}, "effective batch 16 + pure_bf16")
    # no wait for the GPU in each step: transformers' NaN/Inf loss filter reads every micro-batch's loss
    args, why = new_default(FIXED, 2048, 8, gpu_bytes, None)
    nowait = {**args, "logging_nan_inf_filter": False}
    runs["fixed-new-nowait"] = (FIXED, 2048, nowait, "Liger, eager, no NaN/Inf loss filter (no per-step wait)")
    # Liger's fused loss only, and each decoder layer compiled (inductor fuses norms, SwiGLU, RoPE, LoRA's adds)
    compiled = {**nowait, "enable_liger_kernel": False, "_fused_loss": True, "_compile_layers": True}
    runs["fixed-new-layers"] = (FIXED, 2048, compiled, "no per-step wait, Liger's fused loss, decoder layers compiled")
    runs["fixed-compile-noliger"] = (FIXED, 2048, {**nowait, "enable_liger_kernel": False, "torch_compile": True},
                                     "no per-step wait, no Liger, the whole model compiled (torch_compile)")
    # the whole model compiled through LLaMA-Factory's torch_compile (Liger's kernels fail under Dynamo):
    # as one graph, one graph per decoder layer (accelerate's regional compilation), with inductor rounding
    # like eager bf16, and against an fp32 reference of the example settings
    whole = {**nowait, "enable_liger_kernel": False, "torch_compile": True}
    regional = {"ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION": "1"}
    runs["fixed-compile"] = (FIXED, 2048, whole, "no per-step wait, no Liger, torch_compile")
    runs["fixed-compile-regional"] = (FIXED, 2048, {**whole, "_env": regional},
                                      "no per-step wait, no Liger, torch_compile by decoder layer")
    runs["fixed-compile-liger-regional"] = (FIXED, 2048, {**whole, "enable_liger_kernel": True, "_env": regional},
                                            "no per-step wait, Liger, torch_compile by decoder layer")
    runs["fixed-compile-emulate"] = (FIXED, 2048, {**whole, "_env": {"TORCHINDUCTOR_EMULATE_PRECISION_CASTS": "1"}},
                                     "torch_compile, inductor rounding each op to bf16 as eager does")
    runs["fixed-fp32"] = (FIXED, 2048, {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 8,
                                        "bf16": False, "_fp32": True},
                          "reference: the example settings in fp32 arithmetic (no TF32)")
    args, why = new_default(FIXED, 2048, 8, 24 * 2**30, None, fused_loss=False)
    runs["fixed-compile-24gib"] = (FIXED, 2048, {**args, "enable_liger_kernel": False, "torch_compile": True,
                                                 "include_num_input_tokens_seen": "non_padding", "_memory_gib": 24},
                                   f"torch_compile on a 24 GiB GPU (this process limited to 24 GiB): {why}")
    liger_regional = {"logging_nan_inf_filter": False, "torch_compile": True, "_env": regional}
    runs["fixed-compile-liger-emulate"] = (FIXED, 2048, {**whole, "enable_liger_kernel": True, "_env": {
        **regional, "TORCHINDUCTOR_EMULATE_PRECISION_CASTS": "1"}}, "Liger, torch_compile by decoder layer, "
        "inductor rounding each op to bf16 as eager does")
    args, why = new_default(FIXED, 2048, 8, 24 * 2**30, None)
    runs["fixed-compile-liger-24gib"] = (FIXED, 2048, {**args, **liger_regional, "_memory_gib": 24},
                                         f"Liger, torch_compile by decoder layer, 24 GiB: {why}")
    args, why = new_default(VARIABLE, 3072, 8, gpu_bytes, None)
    runs["var-compile-liger-regional"] = (VARIABLE, 3072, {**args, **liger_regional},
                                          f"Liger, torch_compile by decoder layer: {why}")
    args, why = new_default(FIXED, 2048, 8, gpu_bytes, None, fused_loss=False)
    as_built = {"enable_liger_kernel": False, "torch_compile": True, "include_num_input_tokens_seen": "non_padding"}
    runs["fixed-compile-chosen"] = (FIXED, 2048, {**args, **as_built},
                                    f"train=gpu-bf16 with torch_compile, batch as llmbuild chooses it: {why}")
    runs["fixed-fp32-8"] = (FIXED, 2048, {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
                                          "disable_gradient_checkpointing": True, "bf16": False, "_fp32": True},
                            "reference: fp32 weights and arithmetic (no TF32), batch 8 x 1")
    args, why = new_default(VARIABLE, 3072, 8, gpu_bytes, None, fused_loss=False)
    runs["var-compile"] = (VARIABLE, 3072, {**args, "enable_liger_kernel": False, "torch_compile": True,
                                            "include_num_input_tokens_seen": "non_padding"},
                           f"train=gpu-bf16 with torch_compile, batch as llmbuild chooses it: {why}")
    varwait = {**args, "logging_nan_inf_filter": False}
    runs["var-new-nowait"] = (VARIABLE, 3072, varwait, f"Liger, eager, no per-step wait: {why}")
    runs["var-new-layers"] = (VARIABLE, 3072, {**varwait, "enable_liger_kernel": False, "_fused_loss": True,
                                               "_compile_layers": True},
                              "no per-step wait, Liger's fused loss, decoder layers compiled")
    # train=gpu-bf16 now (compiled layers, Liger's fused loss), on fixed and variable lengths and on 24 GiB
    for data, lengths, cutoff in (("fixed", FIXED, 2048), ("var", VARIABLE, 3072)):
        args, why = default(lengths, cutoff, gpu_bytes)
        runs[f"{data}-default"] = (lengths, cutoff, args, why)
    args, why = default(FIXED, 2048, 24 * 2**30)
    runs["fixed-default-24gib"] = (FIXED, 2048, {**args, "_memory_gib": 24}, f"{why} (process capped at 24 GiB)")
    args, why = default(FIXED, 2048, gpu_bytes)
    runs["fixed-default-fusedround"] = (FIXED, 2048, {**args, "_env": environment(LAYERS, KERNEL)},
                                        f"{why}; but train.compile_rounding=kernel")
    # train=gpu-qlora: the same on a 4-bit base (bitsandbytes NF4), eager with Liger and with compiled layers
    args, why = new_default(FIXED, 2048, 8, gpu_bytes, None, quantization_bit=4)
    runs["fixed-qlora-new"] = (FIXED, 2048, args, f"QLoRA, Liger, eager: {why}")
    args, why = default(FIXED, 2048, gpu_bytes, quantization_bit=4)
    runs["fixed-qlora-default"] = (FIXED, 2048, args, f"train=gpu-qlora: {why}")
    return runs


def worker(spec_path: str) -> None:
    import torch
    import transformers
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    from llmbuild.adapters import llamafactory_compiled

    spec = json.loads(Path(spec_path).read_text())
    cuda = torch.cuda.is_available()
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)   # a CPU dry run of the bench itself
    limit = spec["args"].pop("_memory_gib", None)
    # llmbuild's launcher of compiled decoder layers (train.compile=layers): Liger's fused loss alone, the layers
    fused_loss = spec["args"].pop("_fused_loss", False)
    compile_layers = spec["args"].pop("_compile_layers", False)
    os.environ.update(spec["args"].pop("_env", {}))   # e.g. accelerate's regional compilation, inductor's options
    if "TORCHINDUCTOR_EMULATE_PRECISION_CASTS" in os.environ:   # read when inductor's config was imported
        import torch._inductor.config
        torch._inductor.config.emulate_precision_casts = os.environ["TORCHINDUCTOR_EMULATE_PRECISION_CASTS"] == "1"
    if spec["args"].pop("_fp32", False):   # a reference in fp32 (LLaMA-Factory would load the weights in bf16)
        loader = transformers.PreTrainedModel.from_pretrained.__func__

        def from_pretrained(cls, *args, **kwargs):
            kwargs.pop("torch_dtype", None)
            return loader(cls, *args, **{**kwargs, "dtype": torch.float32})
        transformers.PreTrainedModel.from_pretrained = classmethod(from_pretrained)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    profile = spec.get("profile")
    if limit:   # a smaller GPU: the caching allocator refuses beyond this share of the card
        torch.cuda.set_per_process_memory_fraction(limit * 2**30 / torch.cuda.get_device_properties(0).total_memory)
    if fused_loss:
        print(llamafactory_compiled.apply_fused_loss(Path(spec["args"]["model_name_or_path"])), flush=True)
    pad_id, last = spec["pad_id"], spec["args"]["max_steps"]
    # Nothing here waits for the GPU inside the measured steps: tokens and losses stay on the device until
    # the end, and the clock is read after a synchronise at the first and the last step of the window only.
    record = {"losses": {}}
    counts, micro, steps = [], [], []
    original_step = transformers.Trainer.training_step

    def training_step(self, *args, **kwargs):
        loss = original_step(self, *args, **kwargs)
        micro.append(loss.detach())
        return loss
    transformers.Trainer.training_step = training_step

    class Meter(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            def hook(module, positional, named):
                ids = named.get("input_ids", positional[0] if positional else None)
                if ids is not None:
                    counts.append(((ids != pad_id).sum(), ids.numel()))
            model.register_forward_pre_hook(hook, with_kwargs=True)
            if compile_layers:
                print(llamafactory_compiled.compile_layers(model), flush=True)
            self.profiler = None

        def on_step_begin(self, args, state, control, **kwargs):
            if profile and state.global_step == WARMUP + 1:
                self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                                   torch.profiler.ProfilerActivity.CUDA])
                synchronize()
                self.profiler.__enter__()
                self.profiled = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            real = torch.stack([c[0] for c in counts]).sum()
            steps.append((torch.stack(micro).sum(), real, sum(c[1] for c in counts)))
            micro.clear()
            counts.clear()
            if state.global_step in (WARMUP, last):
                synchronize()
                record[f"clock{state.global_step}"] = time.perf_counter()
            if self.profiler is not None and state.global_step == WARMUP + 3:
                synchronize()
                wall = time.perf_counter() - self.profiled
                self.profiler.__exit__(None, None, None)
                Path(profile).write_text(profile_table(self.profiler, wall))
                self.profiler = None

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.time()
    run_exp(args=spec["args"], callbacks=[Meter()])
    record["window"] = record[f"clock{last}"] - record[f"clock{WARMUP}"]
    record["steps"] = [{"real": int(real), "total": total} for _, real, total in steps]
    record["losses"] = {str(i + 1): float(loss) for i, (loss, _, _) in enumerate(steps)}
    record.update(peak_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
                  reserved_gib=torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0, wall=time.time() - started)
    Path(spec["record"]).write_text(json.dumps(record))


KERNELS = (("matmul", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "splitk")),
           ("attention", ("flash", "fmha", "attention", "cudnn")),
           ("optimizer", ("adam", "multi_tensor", "foreach")),
           ("copy/cast", ("copy", "cast", "to_copy")),
           ("reduction", ("reduce", "norm")),
           ("elementwise", ("elementwise", "vectorized", "unrolled")))


def profile_table(profiler, wall: float) -> str:
    """Where two profiled optimizer steps spent the GPU's time: kernel time by kind, idle share, top kernels."""
    kernels: dict[str, list[float]] = {}
    spans = []
    for event in profiler.events():
        if event.device_type.name == "CUDA" and event.time_range.elapsed_us() > 0:
            entry = kernels.setdefault(event.name, [0.0, 0])
            entry[0] += event.time_range.elapsed_us() / 1e6
            entry[1] += 1
            spans.append((event.time_range.start, event.time_range.end))
    busy = sum(t for t, _ in kernels.values()) or 1e-9
    covered, reach = 0.0, float("-inf")
    for start, end in sorted(spans):   # the union of the kernels' spans: when the GPU ran anything
        if end > reach:
            covered += (end - max(start, reach)) / 1e6
            reach = end
    kinds: dict[str, float] = {}
    for name, (seconds, _) in kernels.items():
        low = name.lower()
        kind = next((k for k, words in KERNELS if any(w in low for w in words)),
                    "triton (Liger, inductor)" if low.startswith(("triton", "_")) else "other")
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    lines = [f"2 steps: wall {wall * 1000:.0f} ms, kernels {busy * 1000:.0f} ms, GPU busy {covered * 1000:.0f} ms "
             f"(idle {max(0.0, 1 - covered / wall):.1%})"]
    lines += [f"  {kind:<26}{seconds * 1000:9.1f} ms {seconds / busy:6.1%}"
              for kind, seconds in sorted(kinds.items(), key=lambda kv: -kv[1])]
    lines.append("top kernels (ms, calls):")
    lines += [f"  {seconds * 1000:8.1f} {calls:6d}  {name[:140]}"
              for name, (seconds, calls) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:40]]
    return "\n".join(lines) + "\n"


def summarise(name: str, record: dict, peak: float, mean_len: float) -> dict:
    steady = record["steps"][WARMUP:]
    seconds = record["window"]
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
    for entry in wanted:   # NAME, or NAME+profile: profile two steps after the warm-up (not timed)
        name, _, profiled = entry.partition("+")
        if time.time() - began > options.budget - 75:
            print(f"== {entry}: skipped, out of time")
            continue
        lengths, cutoff, extra, why = runs[name]
        data = name.split("-")[0]
        args = {"model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "lora",
                "lora_target": "all", "lora_rank": 8, "dataset": "rows", "dataset_dir": str(tmp / data),
                "template": "qwen", "cutoff_len": cutoff, "output_dir": str(tmp / f"out-{name}"),
                "overwrite_output_dir": True, "save_strategy": "no", "report_to": "none", "logging_steps": 1000,
                "learning_rate": 1e-4, "bf16": True, "preprocessing_num_workers": 8, "max_steps": options.steps,
                "seed": 42, "dataloader_num_workers": 2, **extra}
        spec = tmp / f"{name}.json"
        profile = str(out / f"profile-{name}.txt") if profiled else None
        spec.write_text(json.dumps({"args": args, "pad_id": pad_id, "record": str(tmp / f"{name}.record.json"),
                                    "profile": profile}))
        print(f"== {entry}: {why}\n   {json.dumps(extra)}", flush=True)
        if profile and options.steps < WARMUP + 3:
            print(f"   not profiled: --steps must be at least {WARMUP + 3}")
            continue
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
        if profile:
            print("   " + Path(profile).read_text().replace("\n", "\n   ")[:3000], flush=True)
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
