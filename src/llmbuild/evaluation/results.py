"""eval.json: the evaluation results the eval stage writes and the report reads. Their format is
declared here once, as dataclasses: the stage builds them, `write` stores them, and `load` checks
a file against the same fields, so a stale or foreign eval.json is an error about eval.json, not
a template error in the report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import StageError

VLLM = "vllm"   # ModelResult.kind of a vLLM checkpoint


@dataclass(frozen=True)
class Holdout:
    rows: int                   # held-out rows evaluated
    size: float                 # dataset.holdout: a fraction or a row count
    seed: int                   # dataset.holdout_seed


@dataclass(frozen=True)
class Settings:
    max_new_tokens: int
    kld_reference: str          # the GGUF every KLD is measured against (the f16 one)
    recommend_kld: float        # the report recommends the smallest quant below this mean KLD
    n_ctx: int
    pref_beta: float | None = None  # preference tuning's beta: the scale of the implicit reward
    vllm_kld_reference: str | None = None  # the model vLLM checkpoints' KLD is measured against (the merged one)


@dataclass(frozen=True)
class ModelResult:
    name: str                   # base, fine-tuned, or the GGUF's type
    kind: str                   # "hf", "gguf" or "vllm" (a compressed-tensors checkpoint)
    quant: str | None
    file_size: int              # bytes: the GGUF, or the HF folder's safetensors
    nll: float | None           # mean negative log-likelihood of the answer tokens
    perplexity: float | None
    answer_tokens: int
    kld: float | None           # mean KL divergence from the reference (GGUFs: the f16 GGUF; vLLM: the merged)
    top1: float | None          # share of positions whose top token agrees with the reference
    exact_match: float | None   # plain answers
    rouge_l: float | None
    tool_call: dict[str, float] | None  # tool-call answers: parsed, name, arguments
    prompt_tokens_per_second: float | None
    generation_tokens_per_second: float | None
    peak_rss_bytes: int
    quantized: dict[str, Any] | None    # a quant's quantize.json: tensor types and llama.cpp's fallbacks
    # preference tuning: prefers_chosen, margin, reward_accuracy, reward_margin (evaluation/preference.py)
    preference: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None  # a vLLM checkpoint's vllm_quant.json: scheme, method, calibration


@dataclass(frozen=True)
class Sample:
    prompt: str                 # the user's last message
    reference: str              # the trained answer (tool calls as JSON)
    answers: dict[str, str]     # model name -> its greedy answer


@dataclass(frozen=True)
class EvalResults:
    holdout: Holdout
    settings: Settings
    shipped_quant: str
    models: list[ModelResult]   # HF models, the reference GGUF, its quants from large to small, then vLLM's
    samples: list[Sample]
    method: str = "sft"                 # train.stage of the last training stage
    data: str = "chat"                  # its kind of data (facts/train_methods.py)
    preference_reference: str | None = None  # the model preference rewards are measured against

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# fields a reader does without: the report shows them when present
OPTIONAL = {Settings: ("recommend_kld", "n_ctx", "pref_beta", "vllm_kld_reference"),
            ModelResult: ("answer_tokens", "quantized", "preference", "checkpoint"),
            EvalResults: ("method", "data", "preference_reference")}


def write(path: Path, results: EvalResults) -> None:
    Path(path).write_text(json.dumps(results.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _required(kind: type) -> list[str]:
    return [f.name for f in fields(kind) if f.name not in OPTIONAL.get(kind, ())]


def missing_fields(data: dict[str, Any]) -> list[str]:
    """The fields of `data` (an eval.json) that the format requires and it lacks."""
    missing = [k for k in _required(EvalResults) if k not in data]
    for name, kind in (("holdout", Holdout), ("settings", Settings)):
        if isinstance(data.get(name), dict):
            missing += [f"{name}.{k}" for k in _required(kind) if k not in data[name]]
    for group, kind in (("models", ModelResult), ("samples", Sample)):
        for index, item in enumerate(data.get(group) or []):
            missing += [f"{group}[{index}].{k}" for k in _required(kind) if k not in item]
    return missing


def load(path: Path) -> dict[str, Any]:
    """An eval.json, checked against the format."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StageError(f"{path}: cannot read the eval results ({err}); rebuild the eval stage") from None
    if not isinstance(data, dict):
        raise StageError(f"{path}: the eval results are a JSON {type(data).__name__}, not an object; "
                         f"rebuild the eval stage (doit forget eval, then doit build)")
    missing = missing_fields(data)
    if missing:
        raise StageError(f"{path}: eval results without {', '.join(missing)}; rebuild the eval stage "
                         f"(doit forget eval, then doit build)")
    return data
