"""One registry decides what a chat family is (facts/chat_families.py): configuration is validated
against it, and every family has every file it needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError
from llmbuild.facts.chat_families import FAMILIES
from llmbuild.files.templates import TemplateDir

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_has_its_chat_and_ollama_templates(family):
    templates = TemplateDir(ROOT)
    assert templates.text(FAMILIES[family].chat_template).strip()
    assert templates.text(FAMILIES[family].ollama_template).strip()


def test_every_template_file_belongs_to_a_family():
    for folder, suffix in (("chat", ".jinja"), ("ollama", ".gotmpl")):
        names = {p.name.removesuffix(suffix) for p in (ROOT / "templates" / folder).glob(f"*{suffix}")}
        assert names <= set(FAMILIES), f"templates/{folder}: {sorted(names - set(FAMILIES))} have no family"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_composes(family):
    assert compose(ROOT, [f"prompt.template={family}"]).cfg.prompt.template == family


def test_a_template_file_without_a_family_is_rejected_at_composition(tmp_path):
    """Adding templates/chat/mistral.jinja used to pass validation and crash training later."""
    for part in ("conf", "recipes", "templates", "data"):
        shutil.copytree(ROOT / part, tmp_path / part, symlinks=True)
    (tmp_path / "templates" / "chat" / "mistral.jinja").write_text("{{ messages }}")
    (tmp_path / "templates" / "ollama" / "mistral.gotmpl").write_text("{{ .Prompt }}")
    with pytest.raises(ConfigError, match=r"model.chat_format.*'mistral'.*not a valid choice.*Valid: chatml"):
        compose(tmp_path, ["model.chat_format=mistral"])
