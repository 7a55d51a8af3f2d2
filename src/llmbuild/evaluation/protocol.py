"""What crosses the eval worker's process boundary: the request the eval stage writes for one model
and the answer the worker (adapters/eval_worker.py) writes back, both as JSON files. The worker
runs in a process of its own so that its peak memory is its own, and for vLLM checkpoints in
another environment's Python; both sides read and write these records, so a field renamed on one
side is renamed on the other. Imports nothing but the standard library and the cases, because the
worker imports it in the quant environment too."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cases import Case

# request fields that are paths: strings in the JSON file
_PATHS = ("path", "save_logprobs", "reference_logprobs")


@dataclass(frozen=True)
class Request:
    kind: str                   # roster.HF, GGUF or VLLM: how the worker loads the model
    path: Path                  # the HF folder, the GGUF file or the checkpoint's folder
    cases: list[Case]
    stops: list[str]            # texts that end an answer
    max_new_tokens: int
    n_ctx: int
    n_gpu_layers: int           # GGUF layers on the GPU (-1: all)
    # a folder: keep this model's per-position log-probabilities there as the KLD reference...
    save_logprobs: Path | None = None
    # ...or compare with the ones kept there (KLD, top-1 agreement)
    reference_logprobs: Path | None = None
    # token ids of further text (eval.kld_text), scored only for KLD and top-1 against the reference
    kld_chunks: list[list[int]] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)   # the cases as their to_json
        return {**data, **{name: None if data[name] is None else str(data[name]) for name in _PATHS}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Request:
        paths = {name: Path(data[name]) if data.get(name) is not None else None for name in _PATHS}
        return cls(**{**data, **paths, "cases": [Case.from_json(case) for case in data["cases"]]})

    def write(self, path: Path) -> None:
        _write(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> Request:
        return cls.from_json(_read(path))


@dataclass(frozen=True)
class Answer:
    answers: list[str]          # the greedy answer to each case that generates, in order
    nll: float | None           # mean negative log-likelihood of the answer tokens
    perplexity: float | None
    answer_tokens: int
    kld: float | None           # against the reference log-probabilities, when compared with them
    top1: float | None
    prompt_tokens_per_second: float | None
    generation_tokens_per_second: float | None
    peak_rss_bytes: int
    case_logprobs: list[float]  # per case: the answer's summed log-probability (preference metrics)
    case_tokens: list[int]      # per case: its answer tokens
    # 95% intervals (evaluation/scores.py), and the positions KLD and top-1 were measured at
    perplexity_interval: list[float] | None = None
    kld_interval: list[float] | None = None
    top1_interval: list[float] | None = None
    compared_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        return cls(**data)

    def write(self, path: Path) -> None:
        _write(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> Answer:
        return cls.from_json(_read(path))


def _write(path: Path, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _read(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))
