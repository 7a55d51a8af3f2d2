"""train: LoRA fine-tuning with `llamafactory-cli train` on a YAML written into the artifact."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..adapters import hf_tokenizer, llamafactory
from ..chat.conversation import turn_pieces
from ..chat.setup import ChatSetup
from ..dataset import rows as dataset_rows
from ..errors import StageError
from ..facts import layout
from . import chat
from .context import StageContext


def arguments(cfg: DictConfig, base: str, dataset_dir: str, output_dir: str) -> dict[str, Any]:
    """LLaMA-Factory's training arguments for this stage's config view (also `doit preview`'s).
    The dataset holds the conversations already written by the chat template (`write_samples`), so
    LLaMA-Factory's template adds nothing ("empty") and only masks the prompts."""
    return llamafactory.train_args(
        base=base, dataset=SAMPLES_DATASET, dataset_dir=dataset_dir, output_dir=output_dir,
        template=llamafactory.TEMPLATE_AS_WRITTEN, trust_remote_code=cfg.model.trust_remote_code,
        lora=OmegaConf.to_container(cfg.lora, resolve=True), train=OmegaConf.to_container(cfg.train, resolve=True))


SAMPLES_DATASET = "samples"


def write_samples(cfg: DictConfig, templates, base: Path, data: Path, folder: Path) -> tuple[ChatSetup, int, int]:
    """The data stage's training rows through the build's chat template, in (prompt, answer) pieces,
    as LLaMA-Factory's dataset `samples` in `folder`. Returns the setup, rows and samples."""
    setup = chat.choose_for(cfg, templates, base)
    tokenizer = hf_tokenizer.load_tokenizer(base)
    render, stops = hf_tokenizer.template_renderer(tokenizer, setup.template), setup.stops(tokenizer.eos_token)
    dataset = data / layout.DATASET_DIR
    info = json.loads((dataset / layout.DATASET_INFO).read_text(encoding="utf-8"))
    (entry,) = info.values()
    rows = json.loads((dataset / entry["file_name"]).read_text(encoding="utf-8"))
    samples = []
    for number, row in enumerate(rows, 1):
        conversation = dataset_rows.to_openai(row, entry["formatting"])
        try:
            for pieces in turn_pieces(render, conversation["messages"], conversation["tools"], stops):
                samples.append({"conversations": [turn for prompt, answer in pieces for turn in (
                    {"from": "human", "value": prompt}, {"from": "gpt", "value": answer})]})
        except ValueError as err:
            raise StageError(f"training row {number}: {err}; {setup.source} cannot be trained on this conversation "
                             f"as it is") from None
        except Exception as err:   # the template's own raise_exception, or a Jinja error
            raise StageError(f"training row {number}: {setup.source} rejects this conversation: {err}") from None
    folder.mkdir(parents=True, exist_ok=True)
    (folder / layout.TRAIN_SAMPLES).write_text(json.dumps(samples, ensure_ascii=False, indent=1) + "\n",
                                               encoding="utf-8")
    (folder / layout.DATASET_INFO).write_text(json.dumps(
        {SAMPLES_DATASET: {"file_name": layout.TRAIN_SAMPLES, "formatting": "sharegpt",
                           "columns": {"messages": "conversations"}}}, indent=2) + "\n", encoding="utf-8")
    return setup, len(rows), len(samples)


def check_before_training(ctx: StageContext) -> None:
    """What LLaMA-Factory would find only after loading the model, or never (it truncates a long
    system prompt silently): found in seconds, with the names to use."""
    cfg, base = ctx.cfg, ctx.inputs["base"]
    targets = [t for t in cfg.lora.target if t != "all"]
    modules = hf_tokenizer.weight_module_names(base)
    unknown = [t for t in targets if t not in modules]
    if modules and unknown:
        close = [difflib.get_close_matches(t, sorted(modules), n=1) for t in unknown]
        hint = "; did you mean " + ", ".join(c[0] for c in close if c) + "?" if any(close) else ""
        raise StageError(f"lora.target = {list(cfg.lora.target)}: this model has no module named "
                         f"{', '.join(unknown)}{hint} Its weight modules: {', '.join(sorted(modules))} "
                         f"(or [all] for every linear layer).")
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


def too_long(base, text: str, limit: int) -> bool:
    """Whether `text` has at least `limit` tokens: tokenized only when its bytes could be that many
    (a token holds at least one byte), so a short prompt costs nothing."""
    return len(text.encode("utf-8")) >= limit and hf_tokenizer.count_tokens(base, text) >= limit


ROOM = 32   # tokens a sample needs beside the system prompt, at the very least


def run(ctx: StageContext) -> None:
    check_before_training(ctx)
    setup, rows, samples = write_samples(ctx.cfg, ctx.templates, ctx.inputs["base"], ctx.inputs["data"],
                                         ctx.out / layout.DATASET_DIR)
    family = f"{setup.family} family" if setup.family else "no known family"
    ctx.say(f"chat format: {setup.source} ({family}); {rows} rows -> {samples} training samples")
    args = arguments(ctx.cfg, base=ctx.relative(ctx.inputs["base"]), dataset_dir=layout.DATASET_DIR,
                     output_dir=layout.ADAPTER)
    llamafactory.write_yaml(args, ctx.out, f"LLaMA-Factory LoRA SFT, written by llmbuild ({ctx.key}). Run by hand: "
                                           f"cd {ctx.out.parent.name}/{ctx.key} && llamafactory-cli train "
                                           f"{layout.LLAMAFACTORY_YAML}")
    progress = ctx.progress("training")
    llamafactory.run("train", ctx.out, offline=bool(ctx.cfg.model.path), credentials=ctx.credentials,
                     verbose=ctx.verbose, on_line=llamafactory.train_progress(progress.update))
    progress.close()
    adapter = ctx.out / layout.ADAPTER
    if not (adapter / "adapter_model.safetensors").is_file():
        raise StageError(f"llamafactory-cli train finished without writing {layout.ADAPTER}/adapter_model.safetensors; "
                         f"see train.log")
    losses = llamafactory.logged_losses(adapter)
    results = llamafactory.train_results(adapter)
    tokens, runtime = results.get("num_input_tokens_seen"), results.get("train_runtime")
    speed = f", {tokens:,} tokens at {tokens / runtime:,.0f} tokens/s" if tokens and runtime else ""
    if losses:
        ctx.say(f"train loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} logged steps{speed}")
    else:  # fewer steps than train.logging_steps: LLaMA-Factory's average is all there is
        ctx.say(f"train loss {results.get('train_loss', float('nan')):.4f} on average (no step logged: "
                f"train.logging_steps={ctx.cfg.train.logging_steps})")
