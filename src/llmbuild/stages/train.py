"""train: LoRA fine-tuning with `llamafactory-cli train` on a YAML written into the artifact."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..adapters import hf_tokenizer, llamafactory, llamafactory_launch
from ..chat.setup import ChatSetup
from ..errors import StageError
from ..facts import layout
from ..facts.distributed import STRATEGIES
from ..facts.train_methods import CHAT, TEXT, method
from ..sizing.choice import train_choice
from . import chat, preflight, train_samples
from . import data as data_stage
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg, base = ctx.cfg, ctx.inputs["base"]
    # The command line runs these checks while it plans the build when this model is on disk then
    # (cli/tasks.py); a model built during the run (a GGUF imported, a hub download) is checked first here.
    preflight.check_before_training(cfg, base)
    learner = method(cfg.train.stage)
    setup, rows, written = write_samples(cfg, ctx.templates, ctx.inputs.get("origin", base), ctx.inputs["data"],
                                         ctx.out / layout.DATASET_DIR)
    family = f"{setup.family} family" if setup.family else "no known family"
    if learner.data == TEXT:
        ctx.say(f"{learner.what}: {rows} documents")
    else:
        ctx.say(f"{learner.what}; chat format: {setup.source} ({family}); {rows} rows -> {len(written)} "
                f"training samples")

    chosen = train_choice(cfg, base / "config.json", sample_lengths(base, written) if learner.data == CHAT else None)
    for line in chosen.lines:
        ctx.say(line)
    ctx.record.update(chosen.record)

    args = arguments(cfg, base=ctx.relative(base), dataset_dir=layout.DATASET_DIR, output_dir=layout.ADAPTER,
                     chosen=chosen.values)
    strategy, devices = STRATEGIES[cfg.train.distributed], cfg.train_devices
    llamafactory_launch.write_config(strategy, devices, ctx.out)
    by_hand = layout.BY_HAND_OUTPUT.format(stage=ctx.out.parent.name, key=ctx.key)
    launch = llamafactory_launch.launch(strategy, devices, cfg.train.compile, cfg.train.compile_rounding,
                                        cfg.train.bf16, cfg.train.liger_kernel, learner.name, by_hand_output=by_hand)
    for note in launch.notes:
        ctx.say(note)
    llamafactory.write_yaml(args, ctx.out, f"LLaMA-Factory LoRA {learner.name.upper()}, written by llmbuild "
                                           f"({ctx.key}). Run by hand (the adapter goes to {by_hand}; this "
                                           f"artifact stays as built): cd {ctx.out.parent.name}/{ctx.key} && "
                                           f"{launch.hand}")
    _say_devices(ctx, strategy, devices)

    adapter = ctx.out / layout.ADAPTER
    saved = _checkpoints_outside(ctx, adapter)
    progress = ctx.progress("training")
    llamafactory.run("train", ctx.out, offline=bool(cfg.model.path), credentials=ctx.credentials,
                     verbose=ctx.verbose, on_line=llamafactory.train_progress(progress.update),
                     launch=launch.env, program=launch.program, overrides=_resume_from(ctx, saved))
    progress.close()
    if saved is not None:   # the adapter comes into the artifact; the checkpoints' folder goes
        adapter.unlink()
        os.replace(saved, adapter)
        shutil.rmtree(ctx.resume, ignore_errors=True)
    # a finished artifact holds the adapter, not the Trainer's resumable state (optimizer moments: twice the
    # adapter's size and more per checkpoint)
    llamafactory.drop_checkpoints(adapter)
    _report(ctx, packed=bool(args.get("neat_packing")))


def _checkpoints_outside(ctx: StageContext, adapter: Path) -> Path | None:
    """The Trainer's output folder (the adapter, its checkpoints every train.save_steps) lives outside
    the unfinished artifact, in the key's resume folder, so that a build that is killed or preempted
    keeps its checkpoints for the next build of the key; the artifact's adapter/ links there meanwhile
    (the YAML's output_dir stays `adapter`)."""
    if ctx.resume is None:
        return None
    saved = ctx.resume / layout.ADAPTER
    saved.mkdir(parents=True, exist_ok=True)
    adapter.symlink_to(os.path.relpath(saved, ctx.out))
    return saved


def _resume_from(ctx: StageContext, saved: Path | None) -> list[str]:
    """LLaMA-Factory's resume_from_checkpoint for the newest complete checkpoint an earlier build of this
    key left; what else it left (a checkpoint cut off as it was written, files of the unfinished run) goes."""
    last = llamafactory.last_checkpoint(saved) if saved is not None else None
    for item in saved.iterdir() if saved is not None else ():
        if last is None or (item.name.startswith("checkpoint-") and item != last and
                            _step(item) > _step(last)):
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    if last is None:
        return []
    ctx.say(f"resuming from {last.name} (step {_step(last)}), which an earlier build of this key saved before it "
            f"was stopped")
    return [f"resume_from_checkpoint={layout.ADAPTER}/{last.name}"]


def _step(checkpoint: Path) -> int:
    number = checkpoint.name.rpartition("-")[2]
    return int(number) if number.isdigit() else -1


def arguments(cfg: DictConfig, base: str, dataset_dir: str, output_dir: str,
              chosen: dict[str, Any] | None = None) -> dict[str, Any]:
    """LLaMA-Factory's training arguments for this stage's config view (also `doit preview`'s).
    The dataset holds the samples already written by the chat template (train_samples.py), so
    LLaMA-Factory's template adds nothing ("empty") and only masks the prompts. `chosen`: the
    train values decided when training starts (sizing/choice.py, train_choice: batch,
    accumulation, checkpointing, packing)."""
    learner = method(cfg.train.stage)
    train = {**OmegaConf.to_container(cfg.train, resolve=True), **(chosen or {})}
    args = llamafactory.train_args(
        base=base, dataset=train_samples.DATASET, dataset_dir=dataset_dir, output_dir=output_dir,
        template=llamafactory.TEMPLATE_AS_WRITTEN, trust_remote_code=cfg.model.trust_remote_code,
        lora=OmegaConf.to_container(cfg.lora, resolve=True), train=train, stage=learner.llamafactory_stage,
        pref_loss=learner.pref_loss or train["pref_loss"])
    return {**args, **llamafactory_launch.yaml_args(STRATEGIES[cfg.train.distributed], cfg.train_devices)}


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


def _report(ctx: StageContext, packed: bool) -> None:
    """The losses and speed LLaMA-Factory logged. `packed`: rows were packed (their padding counts as tokens)."""
    adapter = ctx.out / layout.ADAPTER
    if not (adapter / "adapter_model.safetensors").is_file():
        raise StageError(f"LLaMA-Factory's training finished without writing "
                         f"{layout.ADAPTER}/adapter_model.safetensors; see train.log")
    losses = llamafactory.logged_losses(adapter)
    results = llamafactory.train_results(adapter)
    tokens, runtime = results.get("num_input_tokens_seen"), results.get("train_runtime")
    counted = " (packed rows, padding included)" if packed else ""
    speed = (f", {tokens:,} tokens{counted} at {tokens / runtime:,.0f} tokens/s"
             if tokens and tokens > 0 and runtime else "")
    if losses:
        ctx.say(f"train loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} logged steps{speed}")
    else:  # fewer steps than train.logging_steps: LLaMA-Factory's average is all there is
        ctx.say(f"train loss {results.get('train_loss', float('nan')):.4f} on average (no step logged: "
                f"train.logging_steps={ctx.cfg.train.logging_steps})")
