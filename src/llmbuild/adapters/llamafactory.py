"""LLaMA-Factory: write its YAML into the artifact and run `llamafactory-cli` on it.

Paths in the YAML are relative to the artifact folder and the CLI runs there, so the same file
runs by hand unchanged: `cd build/train/<key> && llamafactory-cli train llamafactory.yaml`.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from ..chat_families import FAMILIES
from ..config.validate import chat_family
from ..errors import ToolError
from .process import run_logged

YAML_NAME = "llamafactory.yaml"


def train_args(cfg: DictConfig, base: str, dataset_dir: str, output_dir: str) -> dict[str, Any]:
    lora, train = cfg.lora, cfg.train
    args: dict[str, Any] = {
        "model_name_or_path": base,
        "trust_remote_code": cfg.model.trust_remote_code,
        "stage": train.stage,
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": lora.r,
        "lora_dropout": lora.dropout,
        "lora_target": ",".join(lora.target),
        "use_rslora": lora.rslora,
        "use_dora": lora.dora,
        "dataset": cfg.dataset.name,
        "dataset_dir": dataset_dir,
        "template": FAMILIES[chat_family(cfg)].llamafactory_template,
        "default_system": cfg.prompt.system,
        "cutoff_len": train.cutoff_len,
        "overwrite_cache": True,
        "output_dir": output_dir,
        "overwrite_output_dir": True,
        "logging_steps": train.logging_steps,
        "save_steps": train.save_steps,
        "plot_loss": True,
        "report_to": "none",
        "per_device_train_batch_size": train.per_device_train_batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "learning_rate": train.learning_rate,
        "num_train_epochs": train.num_train_epochs,
        "lr_scheduler_type": train.lr_scheduler_type,
        "optim": train.optim,
        "weight_decay": train.weight_decay,
        "max_grad_norm": train.max_grad_norm,
        "seed": train.seed,
        "bf16": train.bf16,
        "fp16": train.fp16,
        # LLaMA-Factory turns gradient checkpointing on unless told not to
        "disable_gradient_checkpointing": not train.gradient_checkpointing,
    }
    if lora.alpha is not None:
        args["lora_alpha"] = lora.alpha
    if lora.quantization_bit is not None:
        args["quantization_bit"] = lora.quantization_bit
    if train.max_steps > 0:
        args["max_steps"] = train.max_steps
    if train.warmup_steps > 0:
        args["warmup_steps"] = train.warmup_steps
    elif train.warmup_ratio > 0:
        args["warmup_ratio"] = train.warmup_ratio
    if train.preprocessing_num_workers:
        args["preprocessing_num_workers"] = train.preprocessing_num_workers
    args.update(OmegaConf.to_container(train.extra, resolve=True))
    return args


def export_args(cfg: DictConfig, base: str, adapter: str, export_dir: str) -> dict[str, Any]:
    return {
        "model_name_or_path": base,
        "adapter_name_or_path": adapter,
        "trust_remote_code": cfg.model.trust_remote_code,
        "template": FAMILIES[chat_family(cfg)].llamafactory_template,
        "default_system": cfg.prompt.system,
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


def run(command: str, folder: Path, offline: bool) -> None:
    """`llamafactory-cli <command> llamafactory.yaml` inside `folder`, logged to `<command>.log`."""
    env = {"TOKENIZERS_PARALLELISM": "false", "DISABLE_VERSION_CHECK": "1"}
    if offline:
        env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    run_logged([cli(), command, YAML_NAME], folder / f"{command}.log", what=f"llamafactory-cli {command}",
               env=env, cwd=folder)
