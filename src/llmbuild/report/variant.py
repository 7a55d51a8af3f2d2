"""What a report shows, gathered from the finished artifacts of one build."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..evaluation.results import EvalResults


@dataclass
class VariantReport:
    variant: str                                   # the title: which build this is
    config_yaml: str                               # the resolved config, secrets masked
    stages: list[dict[str, Any]]                   # stage, key, seconds, built_at; in build order
    train_losses: list[tuple[int, float]]          # (step, loss) from LLaMA-Factory's trainer log
    eval: EvalResults | None                       # eval.json; None when eval did not run
    smoke: list[dict[str, Any]] = field(default_factory=list)
    training: list[str] = field(default_factory=list)  # what the train stage chose: batch, padding and packing
    swept: dict[str, str] = field(default_factory=dict)  # in a sweep: this variant's value of each swept key
