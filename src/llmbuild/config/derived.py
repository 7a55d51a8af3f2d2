"""Values derived from several config keys. Stage keys hash them under their own names, and a
stage reads them under the same names (`cfg.chat_format`)."""

from __future__ import annotations

from typing import Any, Callable

from omegaconf import DictConfig


def chat_family(cfg: DictConfig) -> str | None:
    """The chat family the configuration names: prompt.template, else model.chat_format; None when
    it names none (the family of the template the model ships is detected when the build runs)."""
    return cfg.prompt.template or cfg.model.chat_format


DERIVED: dict[str, Callable[[DictConfig], Any]] = {"chat_format": chat_family}
