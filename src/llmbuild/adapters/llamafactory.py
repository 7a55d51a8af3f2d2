"""LLaMA-Factory: write its YAML into the artifact and run `llamafactory-cli` on it.

Paths in the YAML are relative to the artifact folder and the CLI runs there, so the same file
runs by hand unchanged: `cd build/train/<key> && llamafactory-cli train llamafactory.yaml`.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from ..chat.parity import Conversation
from ..errors import ToolError
from ..facts.compile_modes import LAYERS, MODEL
from ..facts.layout import LLAMAFACTORY_YAML as YAML_NAME
from .llamafactory_launch import no_multicast
from .process import run_logged

# LLaMA-Factory's template that adds nothing to a conversation: for datasets whose turns are
# already written by the model's chat template (prompts masked, answers trained)
TEMPLATE_AS_WRITTEN = "empty"


def train_args(*, base: str, dataset: str, dataset_dir: str, output_dir: str, template: str,
               trust_remote_code: bool, lora: Mapping[str, Any], train: Mapping[str, Any], stage: str,
               pref_loss: str | None = None) -> dict[str, Any]:
    """LLaMA-Factory's training arguments. `lora` and `train` hold llmbuild's LoRA and training
    settings under their config names (conf/lora, conf/train); `template` is LLaMA-Factory's
    template name, `stage` its training stage (sft, pt, dpo, kto) and `pref_loss` its DPO loss
    (sigmoid, hinge, ipo, orpo, simpo)."""
    args: dict[str, Any] = {
        "model_name_or_path": base,
        "trust_remote_code": trust_remote_code,
        "stage": stage,
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": lora["r"],
        "lora_dropout": lora["dropout"],
        "lora_target": ",".join(lora["target"]),
        "use_rslora": lora["rslora"],
        "use_dora": lora["dora"],
        "dataset": dataset,
        "dataset_dir": dataset_dir,
        "template": template,
        "cutoff_len": train["cutoff_len"],
        "overwrite_cache": True,
        "output_dir": output_dir,
        "overwrite_output_dir": True,
        "logging_steps": train["logging_steps"],
        "save_steps": train["save_steps"],
        "plot_loss": True,
        "report_to": "none",
        # tokens/s in the progress line and the log (real tokens: padding is not work). Packed rows carry a
        # 4-D float mask that the Trainer's non-padding count would sum into a negative number: all of
        # their tokens are counted (packing leaves a few percent of padding)
        "include_num_input_tokens_seen": "all" if train["neat_packing"] else "non_padding",
        "per_device_train_batch_size": train["per_device_train_batch_size"],
        "gradient_accumulation_steps": train["gradient_accumulation_steps"],
        "learning_rate": train["learning_rate"],
        "num_train_epochs": train["num_train_epochs"],
        "lr_scheduler_type": train["lr_scheduler_type"],
        "optim": train["optim"],
        "weight_decay": train["weight_decay"],
        "max_grad_norm": train["max_grad_norm"],
        "seed": train["seed"],
        "bf16": train["bf16"],
        "fp16": train["fp16"],
        # LLaMA-Factory turns gradient checkpointing on unless told not to
        "disable_gradient_checkpointing": not train["gradient_checkpointing"],
    }
    if lora["alpha"] is not None:
        args["lora_alpha"] = lora["alpha"]
    if lora["quantization_bit"] is not None:
        args["quantization_bit"] = lora["quantization_bit"]
    if train["max_steps"] > 0:
        args["max_steps"] = train["max_steps"]
    if train["warmup_steps"] > 0:
        args["warmup_steps"] = train["warmup_steps"]
    elif train["warmup_ratio"] > 0:
        args["warmup_ratio"] = train["warmup_ratio"]
    if train["preprocessing_num_workers"]:
        args["preprocessing_num_workers"] = train["preprocessing_num_workers"]
    if train["packing"] is not None:
        args["packing"] = train["packing"]
    if train["neat_packing"]:   # the train stage has resolved None (pack when it pays) to True or False
        args["neat_packing"] = True
    # compiled decoder layers: llmbuild's launcher applies Liger's fused loss itself (llamafactory_compiled.py)
    if train["liger_kernel"] and train["compile"] != LAYERS:
        args["enable_liger_kernel"] = True
    if train["compile"] == MODEL:
        args["torch_compile"] = True
    if stage in ("dpo", "kto"):
        args.update(pref_beta=train["pref_beta"], pref_ftx=train["pref_ftx"])
    if stage == "dpo":
        args["pref_loss"] = pref_loss
        if pref_loss == "sigmoid":
            args["dpo_label_smoothing"] = train["dpo_label_smoothing"]
        if pref_loss == "simpo":
            args["simpo_gamma"] = train["simpo_gamma"]
    if stage == "kto":
        args.update(kto_chosen_weight=train["kto_chosen_weight"], kto_rejected_weight=train["kto_rejected_weight"])
    args.update(train["extra"])
    return args


def export_args(*, base: str, adapter: str, export_dir: str, trust_remote_code: bool) -> dict[str, Any]:
    """LLaMA-Factory's export arguments: the merge leaves the tokenizer and its chat template as
    the base has them (the merge stage writes the build's template afterwards)."""
    return {
        "model_name_or_path": base,
        "adapter_name_or_path": adapter,
        "trust_remote_code": trust_remote_code,
        "template": TEMPLATE_AS_WRITTEN,
        "finetuning_type": "lora",
        "export_dir": export_dir,
        "export_size": 5,
        "export_device": "cpu",
        "export_legacy_format": False,
    }


def logged_steps(output_dir: Path) -> list[tuple[int, float]]:
    """(step, loss) as LLaMA-Factory logged them (every `logging_steps`) in its trainer_log.jsonl."""
    log = output_dir / "trainer_log.jsonl"
    if not log.is_file():
        return []
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(int(row.get("current_steps", index + 1)), float(row["loss"]))
            for index, row in enumerate(rows) if row.get("loss") is not None]


def logged_losses(output_dir: Path) -> list[float]:
    """The training losses LLaMA-Factory logged, in order."""
    return [loss for _, loss in logged_steps(output_dir)]


def train_results(output_dir: Path) -> dict[str, Any]:
    """LLaMA-Factory's train_results.json (average train_loss, runtime, samples/s), if written."""
    try:
        return json.loads((output_dir / "train_results.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def write_yaml(args: dict[str, Any], folder: Path, header: str) -> Path:
    path = folder / YAML_NAME
    path.write_text(f"# {header}\n" + yaml.safe_dump(args, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def cli() -> str:
    beside_python = Path(sys.executable).with_name("llamafactory-cli")
    found = str(beside_python) if beside_python.exists() else shutil.which("llamafactory-cli")
    if not found:
        raise ToolError("llamafactory-cli is not installed in this environment. Run the set-up command in README.md.")
    return found


def run(command: str, folder: Path, offline: bool, credentials: Mapping[str, str] | None = None,
        verbose: bool = False, on_line: Callable[[str], None] | None = None,
        launch: Mapping[str, str] | None = None, program: list[str] | None = None,
        overrides: list[str] = ()) -> None:
    """`llamafactory-cli <command> llamafactory.yaml` inside `folder`, logged to `<command>.log`.
    `credentials`: environment variables (HF_TOKEN, ...) for the tool only, never written down.
    `verbose`: the tool's output on the terminal too; `on_line`: a progress reader (`train_progress`).
    `launch`: the launcher's variables (llamafactory_launch.run_env); NVLink multicast is off either way.
    `program`: another command line that runs LLaMA-Factory on the YAML (llamafactory_compiled.program).
    `overrides`: KEY=VALUE after the YAML, replacing its values for this run (resume_from_checkpoint=...)."""
    env = {"TOKENIZERS_PARALLELISM": "false", "DISABLE_VERSION_CHECK": "1", **(credentials or {}),
           **no_multicast(), **(launch or {})}
    if offline:
        env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    argv = [*(program or [cli(), command]), YAML_NAME, *overrides]
    what = f"llamafactory-cli {command}" if program is None else f"LLaMA-Factory's {command} ({' '.join(program[1:])})"
    run_logged(argv, folder / f"{command}.log", what=what,
               env=env, cwd=folder, quiet=not verbose, on_line=on_line)


# the HF Trainer's intermediate saves in its output folder (`checkpoint-<step>`: adapter, optimizer and scheduler
# state, for resuming a run); the finished adapter is the folder's own files
CHECKPOINTS = "checkpoint-*"


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint in a training's output folder: the Trainer writes a checkpoint's
    trainer_state.json last (after the weights, optimizer, scheduler and RNG states), so one without a
    readable one was cut off as it was written."""
    numbered = [(int(p.name.rpartition("-")[2]), p) for p in Path(output_dir).glob(CHECKPOINTS)
                if p.is_dir() and p.name.rpartition("-")[2].isdigit()]
    for _, folder in sorted(numbered, reverse=True):
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return folder
    return None


def drop_checkpoints(output_dir: Path) -> list[str]:
    """Remove the Trainer's checkpoints from a finished training's output folder; returns their names."""
    found = sorted(p for p in Path(output_dir).glob(CHECKPOINTS) if p.is_dir())
    for folder in found:
        shutil.rmtree(folder)
    return [p.name for p in found]


# `llamafactory-cli export` writes an Ollama Modelfile of its own into the merged folder (`FROM .`,
# a TEMPLATE without the format's special tokens, num_ctx 4096): a model imported with it would be
# prompted in no format it was trained on. The ollama stage's Modelfile is the one llmbuild checks.
EXPORT_MODELFILE = "Modelfile"


def drop_export_modelfile(export_dir: Path) -> None:
    """Remove LLaMA-Factory's own Modelfile from an exported model folder."""
    (Path(export_dir) / EXPORT_MODELFILE).unlink(missing_ok=True)


# the HF Trainer's progress bar (` 50%|█████     | 30/60 [01:23<01:23,  2.78s/it]`: no label, unlike
# the dataset bars) and its logged metrics (`{'loss': '2.31', ..., 'num_input_tokens_seen': 93, ...}`)
_TRAIN_BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[([\d:]+)<([\d:?]+)(?:,\s*([\d.]+)(s/it|it/s))?")
_LOSS = re.compile(r"\{'loss': '?([-\d.e+]+)")
_TOKENS_SEEN = re.compile(r"'num_input_tokens_seen': '?(\d+)")


def train_progress(update: Callable[[int, int, str], None],
                   clock: Callable[[], float] = time.monotonic) -> Callable[[str], None]:
    """A reader of `llamafactory-cli train` output that calls `update(step, steps, detail)` with
    the loss last logged, the tokens/s between the last two logged steps (padding not counted) and
    the time left."""
    state: dict[str, Any] = {"loss": None, "seen": None, "tokens_per_s": None}

    def read(line: str) -> None:
        loss = _LOSS.search(line)
        if loss:
            state["loss"] = float(loss[1])
            seen = _TOKENS_SEEN.search(line)
            if seen:
                now, tokens = clock(), int(seen[1])
                if state["seen"] is not None and now > state["seen"][0]:
                    state["tokens_per_s"] = (tokens - state["seen"][1]) / (now - state["seen"][0])
                state["seen"] = (now, tokens)
        bar = _TRAIN_BAR.match(line)
        if bar:
            step, steps, _, left, rate, unit = bar.groups()
            tokens_per_s = state["tokens_per_s"]
            speed = f"{tokens_per_s:,.0f} tokens/s" if tokens_per_s else f"{rate} {unit}" if rate else ""
            detail = [f"loss {state['loss']:.4f}" if state["loss"] is not None else "",
                      speed, f"{left} left" if "?" not in left else ""]
            update(int(step), int(steps), ", ".join(d for d in detail if d))
    return read


def training_renderer(tokenizer, pieces_of: Callable[[Conversation], list[tuple[str, str]]]
                      ) -> Callable[[Conversation], str]:
    """The prompt before a conversation's last answer as LLaMA-Factory encodes its training sample
    (the tokens the adapter learns from), decoded to text with `tokenizer` (LLaMA-Factory adjusts it:
    give it a copy of its own), or the sample's text when those are its tokens.
    `pieces_of(conversation)`: the sample's (prompt, answer) pieces, as written into the training
    dataset."""
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    encoder = get_template_and_fix_tokenizer(tokenizer, DataArguments(template=TEMPLATE_AS_WRITTEN))

    def render(conversation: Conversation) -> str:
        pieces = pieces_of(conversation)
        messages = [{"role": role, "content": text} for pair in pieces
                    for role, text in zip(("user", "assistant"), pair, strict=True)]
        pairs = encoder.encode_multiturn(tokenizer, messages, None, None)
        ids = [token for prompt, answer in pairs[:-1] for token in prompt + answer] + pairs[-1][0]
        # what the tokens decode to, or the text the pieces hold when training sees exactly its tokens
        # (those a server's tokenizer gives it): a SentencePiece tokenizer that adds a space prefix, or
        # drops the whitespace after a special token (Phi-3's), decodes its own tokens of a text to
        # another text. Not caught either way: pieces encoded one by one can split differently at their
        # joins than the whole text (measured: alpaca's several-turns conversation on SmolLM2)
        text = "".join(prompt + answer for prompt, answer in pieces[:-1]) + pieces[-1][0]
        decoded = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if decoded != text and tokenizer.encode(text, add_special_tokens=False) == ids:
            return text
        return decoded
    return render
