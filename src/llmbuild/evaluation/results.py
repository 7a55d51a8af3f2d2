"""eval.json: the evaluation results the eval stage writes and the report reads. Their format is
declared here once, as frozen dataclasses: the stage builds them, `write` stores them, and `load`
reads a file back into them, so the report reads fields rather than string keys, and a stale or
foreign eval.json is an error about eval.json, not a template error in the report.

A field with a default is one that files written by an earlier llmbuild may lack; the default is
what every reader then sees. Keys a later llmbuild added are ignored."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import StageError
from ..facts.quant_types import RECOMMEND_KLD
from ..facts.train_methods import CHAT
from .roster import TUNED


@dataclass(frozen=True)
class Holdout:
    rows: int                   # held-out rows evaluated
    size: float                 # dataset.holdout: a fraction or a row count
    seed: int                   # dataset.holdout_seed


@dataclass(frozen=True)
class Settings:
    max_new_tokens: int
    kld_reference: str          # the GGUF every GGUF's KLD is measured against (the f16 one)
    recommend_kld: float = RECOMMEND_KLD  # the report recommends the smallest quant below this mean KLD
    n_ctx: int | None = None
    pref_beta: float | None = None  # preference tuning's beta: the scale of the implicit reward
    vllm_kld_reference: str | None = None  # the model vLLM checkpoints' KLD is measured against (the merged one)
    kld_tokens: int | None = None          # eval.kld_tokens: the positions KLD was asked to cover


@dataclass(frozen=True)
class ToolCalls:
    """Shares of the tool-call answers (evaluation/metrics.py)."""

    parsed: float               # parse as a call
    name: float                 # call the right functions
    arguments: float            # with the right arguments


@dataclass(frozen=True)
class Preference:
    """Preference metrics (evaluation/preference.py says what each one measures)."""

    pairs: int | None
    prefers_chosen: float | None
    margin: float | None
    reward_accuracy: float | None
    reward_margin: float | None


@dataclass(frozen=True, kw_only=True)
class ModelResult:
    name: str                   # roster.BASE, an earlier pipeline stage's, roster.TUNED, or the quant's
    kind: str                   # roster.HF, GGUF or VLLM (a compressed-tensors checkpoint)
    quant: str | None
    file_size: int              # bytes: the GGUF, or the HF folder's safetensors
    nll: float | None           # mean negative log-likelihood of the answer tokens
    perplexity: float | None
    answer_tokens: int | None = None
    kld: float | None           # mean KL divergence from the reference (GGUFs: the f16 GGUF; vLLM: the merged)
    top1: float | None          # share of positions whose top token agrees with the reference
    exact_match: float | None   # plain answers
    rouge_l: float | None
    tool_call: ToolCalls | None  # tool-call answers
    prompt_tokens_per_second: float | None
    generation_tokens_per_second: float | None
    peak_rss_bytes: int
    quantized: dict[str, Any] | None = None    # a quant's quantize.json: tensor types and llama.cpp's fallbacks
    preference: Preference | None = None       # preference tuning
    checkpoint: dict[str, Any] | None = None   # a vLLM checkpoint's vllm_quant.json: scheme, method, calibration
    # 95% intervals [low, high] (evaluation/scores.py), and the positions KLD and top-1 were measured at
    perplexity_interval: list[float] | None = None
    kld_interval: list[float] | None = None
    top1_interval: list[float] | None = None
    compared_tokens: int | None = None
    imatrix: bool | None = None                # a GGUF quant: built with an importance matrix


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
    data: str = CHAT                    # its kind of data (facts/train_methods.py)
    preference_reference: str | None = None  # the model preference rewards are measured against

    def model(self, name: str | None) -> ModelResult | None:
        """The model of that name, if it was evaluated."""
        return next((m for m in self.models if m.name == name), None)

    @property
    def tuned(self) -> ModelResult | None:
        return self.model(TUNED)

    @property
    def shipped(self) -> ModelResult | None:
        """The GGUF of quant.type."""
        return self.model(self.shipped_quant)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> EvalResults:
        """Raises ValueError saying what the format requires and `data` lacks."""
        if not isinstance(data, dict):
            raise ValueError(f"eval results that are a JSON {type(data).__name__}, not an object")
        missing = missing_fields(data)
        if missing:
            raise ValueError(f"eval results without {', '.join(missing)}")
        try:
            models = [_record(ModelResult, m, tool_call=_optional(ToolCalls, m.get("tool_call")),
                              preference=_optional(Preference, m.get("preference"))) for m in data["models"]]
            return _record(cls, data, holdout=_record(Holdout, data["holdout"]),
                           settings=_record(Settings, data["settings"]), models=models,
                           samples=[_record(Sample, s) for s in data["samples"]])
        except (TypeError, AttributeError) as err:   # a field of another type: a list for an object, ...
            raise ValueError(f"eval results of another shape ({err})") from None


def _record(kind: type, data: dict[str, Any], **nested: Any) -> Any:
    """`kind` from `data`'s fields (keys it does not declare are left out), the nested records given."""
    names = {f.name for f in fields(kind)}
    return kind(**{**{k: v for k, v in data.items() if k in names}, **nested})


def _optional(kind: type, data: dict[str, Any] | None) -> Any:
    return None if data is None else _record(kind, data)


def _required(kind: type) -> list[str]:
    return [f.name for f in fields(kind) if f.default is MISSING and f.default_factory is MISSING]


def missing_fields(data: dict[str, Any]) -> list[str]:
    """The fields of `data` (an eval.json) that the format requires and it lacks."""
    missing = [k for k in _required(EvalResults) if k not in data]
    for name, kind in (("holdout", Holdout), ("settings", Settings)):
        if isinstance(data.get(name), dict):
            missing += [f"{name}.{k}" for k in _required(kind) if k not in data[name]]
    for group, kind in (("models", ModelResult), ("samples", Sample)):
        for index, item in enumerate(data.get(group) or []):
            if isinstance(item, dict):
                missing += [f"{group}[{index}].{k}" for k in _required(kind) if k not in item]
    return missing


def write(path: Path, results: EvalResults) -> None:
    Path(path).write_text(json.dumps(results.to_json(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def load(path: Path) -> EvalResults:
    """An eval.json, read into the records."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StageError(f"{path}: cannot read the eval results ({err}); rebuild the eval stage") from None
    try:
        return EvalResults.from_json(data)
    except ValueError as err:
        raise StageError(f"{path}: {err}; rebuild the eval stage (doit forget eval, then doit build)") from None
