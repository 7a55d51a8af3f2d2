"""train: LoRA fine-tuning with `llamafactory-cli train` on a YAML written into the artifact."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..adapters import hf_tokenizer, hf_weights, llamafactory, llamafactory_compiled, llamafactory_launch
from ..chat.setup import ChatSetup
from ..errors import StageError
from ..facts import layout
from ..facts.compile_modes import LAYERS, MODES, NONE, ROUNDINGS, environment
from ..facts.distributed import STRATEGIES
from ..facts.train_methods import CHAT, TEXT, fused_loss, method
from ..facts.vllm_schemes import IGNORED_LAYERS, MERGED, SCHEMES, built, fit_problem
from ..files.devices import visible_gpus
from ..sizing.choice import batch_choice
from ..sizing.padding import packing_choice
from ..sizing.shape import from_hf_config
from . import chat, train_samples
from . import data as data_stage
from .context import StageContext


def arguments(cfg: DictConfig, base: str, dataset_dir: str, output_dir: str,
              chosen: dict[str, Any] | None = None) -> dict[str, Any]:
    """LLaMA-Factory's training arguments for this stage's config view (also `doit preview`'s).
    The dataset holds the samples already written by the chat template (train_samples.py), so
    LLaMA-Factory's template adds nothing ("empty") and only masks the prompts. `chosen`: the
    train values that `choose` decided (batch, accumulation, checkpointing, packing)."""
    learner = method(cfg.train.stage)
    train = {**OmegaConf.to_container(cfg.train, resolve=True), **(chosen or {})}
    args = llamafactory.train_args(
        base=base, dataset=train_samples.DATASET, dataset_dir=dataset_dir, output_dir=output_dir,
        template=llamafactory.TEMPLATE_AS_WRITTEN, trust_remote_code=cfg.model.trust_remote_code,
        lora=OmegaConf.to_container(cfg.lora, resolve=True), train=train, stage=learner.llamafactory_stage,
        pref_loss=learner.pref_loss or train["pref_loss"])
    return {**args, **llamafactory_launch.yaml_args(STRATEGIES[cfg.train.distributed], cfg.train_devices)}


def check_devices(cfg: DictConfig) -> None:
    """Several GPUs: DeepSpeed installed if the strategy needs it, and as many GPUs visible as the
    key says (LLaMA-Factory would start a process per GPU asked for and fail in each)."""
    devices = cfg.train_devices
    if devices == 1:
        return
    llamafactory_launch.require_deepspeed(STRATEGIES[cfg.train.distributed])
    visible = visible_gpus()
    if visible < devices:
        asked = f"counted {devices} GPUs when the build was planned" if cfg.train.devices != devices else \
            f"asks for {devices} GPUs"
        raise StageError(f"train.devices={cfg.train.devices} {asked}, and this machine shows {visible} "
                         f"(/dev/nvidia*, CUDA_VISIBLE_DEVICES). Use train.devices={max(visible, 1)}, or build "
                         f"on a machine with {devices} GPUs.")


def write_samples(cfg: DictConfig, templates, model: Path, data: Path, folder: Path
                  ) -> tuple[ChatSetup, int, list[dict[str, Any]]]:
    """The data stage's training rows as LLaMA-Factory's dataset in `folder`, written by the
    build's chat template (chosen from the tokenizer of `model`, the model the pipeline started
    from). Returns the setup, rows and samples."""
    tokenizer = hf_tokenizer.load_tokenizer(model)
    setup = chat.choose_for(cfg, templates, tokenizer)
    render, stops = hf_tokenizer.template_renderer(tokenizer, setup.template), setup.stops(tokenizer.eos_token)
    rows = data_stage.load(data)
    samples, entry = train_samples.samples_of(method(cfg.train.stage).data, rows, render, stops, setup.source)
    if not samples:
        raise StageError("no training samples: every row of the dataset is held out for eval; lower dataset.holdout")
    train_samples.write(samples, entry, folder)
    return setup, len(rows), samples


def sample_lengths(model: Path, samples: list[dict[str, Any]]) -> list[int]:
    """Each chat sample's tokens as LLaMA-Factory's "empty" template encodes it: its turns' text,
    written by the chat template, one after the other (plus the EOS token it appends)."""
    tokenizer = hf_tokenizer.load_tokenizer(model)
    return [len(tokenizer.encode("".join(turn["value"] for turn in sample["conversations"]),
                                 add_special_tokens=False)) + 1 for sample in samples]


def choose(ctx: StageContext, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The train values decided here rather than configured: the batch (train.auto_batch, from the
    memory model and the base's shape: sizing/choice.py, as `doit size` shows it) and packing
    (train.neat_packing None: when it pads less). Said in the log, kept in the manifest."""
    cfg, chosen = ctx.cfg, {}
    choice = batch_choice(cfg, from_hf_config(ctx.inputs["base"] / "config.json")) if cfg.train.auto_batch else None
    if choice is not None:
        chosen = {"per_device_train_batch_size": choice.setup.batch_size,
                  "gradient_accumulation_steps": choice.setup.gradient_accumulation_steps,
                  "gradient_checkpointing": choice.setup.gradient_checkpointing}
        ctx.say(f"train.auto_batch: {choice.reason}")
        ctx.record["batch"] = {**chosen, "estimate_gib": round(choice.memory.total / 2**30, 2),
                               "budget_gib": round(choice.budget / 2**30, 2), "why": choice.reason}
    if method(cfg.train.stage).data == CHAT:
        batch = chosen.get("per_device_train_batch_size", cfg.train.per_device_train_batch_size)
        wanted = cfg.train.neat_packing if cfg.train.stage == "sft" else False
        packing = packing_choice(sample_lengths(ctx.inputs["base"], samples), batch, cfg.train.cutoff_len,
                                 cfg.train.seed, wanted)
        chosen["neat_packing"] = packing.pack
        ctx.say(f"padding: {packing.reason}")
        ctx.record["padding"] = {"neat_packing": packing.pack, "padded_share": round(packing.padded, 4),
                                 "packed_share": round(packing.packed, 4), "dropped": packing.dropped,
                                 "why": packing.reason}
    return chosen


def check_before_training(ctx: StageContext) -> None:
    """What LLaMA-Factory would find only after loading the model, or never (it truncates a long
    system prompt silently): found in seconds, with the names to use."""
    cfg, base = ctx.cfg, ctx.inputs["base"]
    check_devices(cfg)
    if cfg.train.liger_kernel and visible_gpus() == 0:
        raise StageError("train.liger_kernel is on and this machine shows no GPU (/dev/nvidia*, "
                         "CUDA_VISIBLE_DEVICES): Liger's kernels are Triton's, which runs on CUDA GPUs only. Set "
                         "train.liger_kernel=false (train=gpu-bf16 on a CPU: train.liger_kernel=false "
                         "train.bf16=false), or build on a GPU machine.")
    targets = [t for t in cfg.lora.target if t != "all"]
    modules = hf_tokenizer.weight_module_names(base)
    unknown = [t for t in targets if t not in modules]
    if modules and unknown:
        close = [difflib.get_close_matches(t, sorted(modules), n=1) for t in unknown]
        hint = "; did you mean " + ", ".join(c[0] for c in close if c) + "?" if any(close) else ""
        raise StageError(f"lora.target = {list(cfg.lora.target)}: this model has no module named "
                         f"{', '.join(unknown)}{hint} Its weight modules: {', '.join(sorted(modules))} "
                         f"(or [all] for every linear layer).")
    _check_vllm_schemes(cfg, base)
    if method(cfg.train.stage).data == TEXT:
        return   # raw text: no system prompt, no chat
    system = cfg.prompt.system or ""
    if too_long(base, system, cfg.train.cutoff_len - ROOM):
        tokens = hf_tokenizer.count_tokens(base, system)
        raise StageError(f"prompt.system is {tokens} tokens and train.cutoff_len is {cfg.train.cutoff_len}: no "
                         f"sample would keep its answer (LLaMA-Factory cuts samples at cutoff_len). Shorten "
                         f"prompt.system or raise train.cutoff_len above {tokens} plus your longest conversation.")
    question = max(list(cfg.smoke.questions) or [""], key=len)
    if too_long(base, system + question, cfg.smoke.n_ctx - cfg.smoke.max_tokens - ROOM):
        tokens = hf_tokenizer.count_tokens(base, system + question)
        raise StageError(f"prompt.system and the longest smoke question are {tokens} tokens, and with "
                         f"smoke.max_tokens={cfg.smoke.max_tokens} they do not fit smoke.n_ctx={cfg.smoke.n_ctx}: the "
                         f"smoke test after training would fail. Raise smoke.n_ctx above "
                         f"{tokens + cfg.smoke.max_tokens + ROOM} or shorten prompt.system.")
    if cfg.eval.enabled and too_long(base, system, cfg.eval.n_ctx - cfg.eval.max_new_tokens - ROOM):
        tokens = hf_tokenizer.count_tokens(base, system)
        raise StageError(f"prompt.system is {tokens} tokens, and with eval.max_new_tokens={cfg.eval.max_new_tokens} "
                         f"it leaves no room in eval.n_ctx={cfg.eval.n_ctx}: eval would cut every held-out prompt's "
                         f"system message. Raise eval.n_ctx above {tokens + cfg.eval.max_new_tokens + ROOM} plus your "
                         f"longest conversation, or shorten prompt.system.")


def _check_vllm_schemes(cfg: DictConfig, base: Path) -> None:
    """A vLLM checkpoint the model's layers cannot take (target.vllm.quants) fails now, not after training."""
    settings = cfg.target.vllm
    names = built(settings.quants or [], settings.serve or MERGED) if settings else []
    if not names:
        return
    inputs = hf_weights.linear_inputs(base, IGNORED_LAYERS)
    for name in names:
        problem = fit_problem(SCHEMES[name], inputs)
        if problem:
            raise StageError(problem)


def too_long(base, text: str, limit: int) -> bool:
    """Whether `text` has at least `limit` tokens: tokenized only when its bytes could be that many
    (a token holds at least one byte), so a short prompt costs nothing."""
    return len(text.encode("utf-8")) >= limit and hf_tokenizer.count_tokens(base, text) >= limit


ROOM = 32   # tokens a sample needs beside the system prompt, at the very least


def run(ctx: StageContext) -> None:
    check_before_training(ctx)
    learner = method(ctx.cfg.train.stage)
    setup, rows, written = write_samples(ctx.cfg, ctx.templates, ctx.inputs.get("origin", ctx.inputs["base"]),
                                         ctx.inputs["data"], ctx.out / layout.DATASET_DIR)
    samples = len(written)
    family = f"{setup.family} family" if setup.family else "no known family"
    if learner.data == TEXT:
        ctx.say(f"{learner.what}: {rows} documents")
    else:
        ctx.say(f"{learner.what}; chat format: {setup.source} ({family}); {rows} rows -> {samples} training samples")
    args = arguments(ctx.cfg, base=ctx.relative(ctx.inputs["base"]), dataset_dir=layout.DATASET_DIR,
                     output_dir=layout.ADAPTER, chosen=choose(ctx, written))
    strategy, devices = STRATEGIES[ctx.cfg.train.distributed], ctx.cfg.train_devices
    llamafactory_launch.write_config(strategy, devices, ctx.out)
    program, by_hand = _program(ctx, learner)
    compiled_env = environment(ctx.cfg.train.compile, ctx.cfg.train.compile_rounding)
    hand = llamafactory_launch.hand_command(strategy, devices, by_hand, compiled_env)
    llamafactory.write_yaml(args, ctx.out, f"LLaMA-Factory LoRA {learner.name.upper()}, written by llmbuild "
                                           f"({ctx.key}). Run by hand: cd {ctx.out.parent.name}/{ctx.key} && {hand}")
    _say_devices(ctx, strategy, devices)
    progress = ctx.progress("training")
    llamafactory.run("train", ctx.out, offline=bool(ctx.cfg.model.path), credentials=ctx.credentials,
                     verbose=ctx.verbose, on_line=llamafactory.train_progress(progress.update),
                     launch={**llamafactory_launch.run_env(strategy, devices), **compiled_env}, program=program)
    progress.close()
    adapter = ctx.out / layout.ADAPTER
    if not (adapter / "adapter_model.safetensors").is_file():
        raise StageError(f"LLaMA-Factory's training finished without writing "
                         f"{layout.ADAPTER}/adapter_model.safetensors; see train.log")
    losses = llamafactory.logged_losses(adapter)
    results = llamafactory.train_results(adapter)
    tokens, runtime = results.get("num_input_tokens_seen"), results.get("train_runtime")
    counted = " (packed rows, padding included)" if args.get("neat_packing") else ""
    speed = (f", {tokens:,} tokens{counted} at {tokens / runtime:,.0f} tokens/s"
             if tokens and tokens > 0 and runtime else "")
    if losses:
        ctx.say(f"train loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} logged steps{speed}")
    else:  # fewer steps than train.logging_steps: LLaMA-Factory's average is all there is
        ctx.say(f"train loss {results.get('train_loss', float('nan')):.4f} on average (no step logged: "
                f"train.logging_steps={ctx.cfg.train.logging_steps})")


def _program(ctx: StageContext, learner) -> tuple[list[str] | None, str]:
    """What runs llamafactory.yaml (None: `llamafactory-cli train`) and the same for the YAML's "Run by
    hand" line; says what train.compile and train.liger_kernel do."""
    train = ctx.cfg.train
    if train.compile != NONE:
        ctx.say(f"train.compile={train.compile}: {MODES[train.compile]}; the first steps compile")
        if train.bf16:   # in fp32 nothing is rounded to bf16
            ctx.say(f"train.compile_rounding={train.compile_rounding}: {ROUNDINGS[train.compile_rounding]}")
    if train.compile != LAYERS:
        return None, "llamafactory-cli train"
    fused = fused_loss(train.liger_kernel, learner.name)
    if train.liger_kernel and not fused:
        ctx.say(f"train.liger_kernel: Liger's fused loss does not apply to {learner.name} (it needs the logits); "
                f"the compiled layers fuse the rest")
    return llamafactory_compiled.program(fused), " ".join(llamafactory_compiled.program(fused, python="python"))


def _say_devices(ctx: StageContext, strategy, devices: int) -> None:
    """The GPUs and the global batch they make, when there are several (or a strategy set for them)."""
    train = ctx.cfg.train
    if devices == 1:
        if strategy.name != "ddp":
            ctx.say(f"one device: train.distributed={strategy.name} takes effect from train.devices=2")
        return
    hosts = llamafactory_launch.multi_node()
    batch = train.per_device_train_batch_size * train.gradient_accumulation_steps * devices * hosts
    ctx.say(f"{devices} GPUs{f' on each of {hosts} hosts' if hosts > 1 else ''}, {strategy.what}; global batch "
            f"{train.per_device_train_batch_size} x {train.gradient_accumulation_steps} accumulation x "
            f"{devices * hosts} GPUs = {batch}")
    if hosts > 1:
        ctx.say(f"NNODES={hosts}: the key covers {devices} GPUs on one host, not the hosts; build a multi-host "
                f"run in a store of its own (store=...)")
