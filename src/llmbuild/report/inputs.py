"""What a report shows, gathered from the finished artifacts of one build."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StageError

REQUIRED_EVAL_KEYS = ("holdout", "settings", "shipped_quant", "models", "samples")
REQUIRED_MODEL_KEYS = ("name", "kind", "quant", "file_size", "nll", "perplexity", "kld", "top1", "exact_match",
                       "rouge_l", "tool_call", "prompt_tokens_per_second", "generation_tokens_per_second",
                       "peak_rss_bytes")
# the nested values the report's text reads: checked here so that a stale eval.json is an error
# about eval.json, not a template error
REQUIRED_NESTED_KEYS = {"holdout": ("rows", "size", "seed"), "settings": ("max_new_tokens", "kld_reference")}
REQUIRED_SAMPLE_KEYS = ("prompt", "reference", "answers")


@dataclass
class VariantReport:
    variant: str                                   # the title: which build this is
    config_yaml: str                               # the resolved config, secrets masked
    stages: list[dict[str, Any]]                   # stage, key, seconds, built_at; in build order
    train_losses: list[tuple[int, float]]          # (step, loss) from LLaMA-Factory's trainer log
    eval: dict[str, Any] | None                    # eval.json; None when eval did not run
    smoke: list[dict[str, Any]] = field(default_factory=list)
    swept: dict[str, str] = field(default_factory=dict)  # in a sweep: this variant's value of each swept key


def load_eval(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StageError(f"{path}: cannot read the eval results ({err}); rebuild the eval stage") from None
    if not isinstance(data, dict):
        raise StageError(f"{path}: the eval results are a JSON {type(data).__name__}, not an object; "
                         f"rebuild the eval stage (doit forget eval, then doit build)")
    missing = [k for k in REQUIRED_EVAL_KEYS if k not in data]
    missing += [f"{outer}.{k}" for outer, keys in REQUIRED_NESTED_KEYS.items() if isinstance(data.get(outer), dict)
                for k in keys if k not in data[outer]]
    missing += [f"models[{i}].{k}" for i, m in enumerate(data.get("models", [])) for k in REQUIRED_MODEL_KEYS
                if k not in m]
    missing += [f"samples[{i}].{k}" for i, s in enumerate(data.get("samples", [])) for k in REQUIRED_SAMPLE_KEYS
                if k not in s]
    if missing:
        raise StageError(f"{path}: eval results without {', '.join(missing)}; rebuild the eval stage "
                         f"(doit forget eval, then doit build)")
    return data
