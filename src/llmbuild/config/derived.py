"""Values derived from several config keys. Stage keys hash them under their own names, and a
stage reads them under the same names (`cfg.chat_format`)."""

from __future__ import annotations

from typing import Any, Callable

from omegaconf import DictConfig

from ..files.devices import devices_in_force


def chat_family(cfg: DictConfig) -> str | None:
    """The chat family the configuration names: prompt.template, else model.chat_format; None when
    it names none (the family of the template the model ships is detected when the build runs)."""
    return cfg.prompt.template or cfg.model.chat_format


def train_devices(cfg: DictConfig) -> int:
    """The GPUs training runs on: train.devices, with `auto` counted on this machine when the build
    is planned. The train key holds the count beside the setting: two, four or eight GPUs make
    different global batches, so the same `auto` recipe planned on a machine with two GPUs and on
    one with four names two artifacts (the word alone would give both one key)."""
    return devices_in_force(cfg.train.devices)


DERIVED: dict[str, Callable[[DictConfig], Any]] = {"chat_format": chat_family, "train_devices": train_devices}
