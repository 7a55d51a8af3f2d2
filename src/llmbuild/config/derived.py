"""Values derived from several config keys. Stage keys hash them under their own names, so
`prompt.template: null` and an explicit `prompt.template: chatml` on a ChatML model are the same
build; a stage reads them under the same names (`cfg.chat_format`)."""

from __future__ import annotations

from typing import Any, Callable

from omegaconf import DictConfig


def chat_family(cfg: DictConfig) -> str:
    """The chat template family in force: prompt.template, else the model's own."""
    return cfg.prompt.template or cfg.model.chat_format


DERIVED: dict[str, Callable[[DictConfig], Any]] = {"chat_format": chat_family}
