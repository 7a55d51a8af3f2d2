"""One registry decides what a chat family is (facts/chat_families.py): configuration is validated
against it, and every family has every file it needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError
from llmbuild.facts.chat_families import FAMILIES, detect
from llmbuild.files.templates import TemplateDir

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_has_its_ollama_template_and_builtin_ones_a_chat_template(family):
    templates = TemplateDir(ROOT)
    assert templates.text(FAMILIES[family].ollama_template).strip()
    if FAMILIES[family].builtin:
        assert templates.text(FAMILIES[family].chat_template).strip()
        assert detect(templates.text(FAMILIES[family].chat_template)).name == family, "its own text is its family"


def test_every_template_file_belongs_to_a_family():
    for folder, suffix in (("chat", ".jinja"), ("ollama", ".gotmpl")):
        names = {p.name.removesuffix(suffix) for p in (ROOT / "templates" / folder).glob(f"*{suffix}")}
        assert names <= set(FAMILIES), f"templates/{folder}: {sorted(names - set(FAMILIES))} have no family"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_composes(family):
    assert compose(ROOT, [f"model.chat_format={family}"]).cfg.model.chat_format == family
    if FAMILIES[family].builtin:
        assert compose(ROOT, [f"prompt.template={family}"]).cfg.prompt.template == family
    else:   # llmbuild has no template of its own for it: the model's own is used
        with pytest.raises(ConfigError, match=r"prompt.template.*not a valid choice"):
            compose(ROOT, [f"prompt.template={family}"])


def test_a_template_file_without_a_family_is_rejected_at_composition(tmp_path):
    """Adding templates/chat/vicuna.jinja used to pass validation and crash training later."""
    for part in ("conf", "recipes", "templates", "data"):
        shutil.copytree(ROOT / part, tmp_path / part, symlinks=True)
    (tmp_path / "templates" / "chat" / "vicuna.jinja").write_text("{{ messages }}")
    (tmp_path / "templates" / "ollama" / "vicuna.gotmpl").write_text("{{ .Prompt }}")
    with pytest.raises(ConfigError, match=r"model.chat_format.*'vicuna'.*not a valid choice.*Valid: deepseek-r1"):
        compose(tmp_path, ["model.chat_format=vicuna"])


def test_each_familys_vllm_tool_parser_is_one_vllm_has_and_a_mistyped_one_is_refused(tmp_path):
    from llmbuild.facts.chat_families import VLLM_TOOL_PARSERS

    assert {f.vllm_tool_parser for f in FAMILIES.values() if f.vllm_tool_parser} <= set(VLLM_TOOL_PARSERS)
    with pytest.raises(ConfigError, match=r"target.vllm.tool_call_parser' = 'hermez'.*Did you mean 'hermes'\?"):
        compose(ROOT, [f"store={tmp_path}", "target=[vllm]", "target.vllm.tool_call_parser=hermez"])
    compose(ROOT, [f"store={tmp_path}", "target=[vllm]", "target.vllm.tool_call_parser=pythonic"])


def test_the_tool_parsers_are_those_of_the_pinned_vllm():
    """The list is written down (llmbuild's environment has no vLLM); the vLLM environment checks it."""
    import re

    from llmbuild.facts.chat_families import VLLM_TOOL_PARSERS
    from llmbuild.facts.tool_envs import VLLM
    from llmbuild.files import envs

    if not envs.available(VLLM, ROOT):
        pytest.skip("the vLLM environment is missing: run README's set-up")
    found = sorted(ROOT.glob(".venv-vllm/lib/python*/site-packages/vllm/tool_parsers/__init__.py"))
    assert found, "vLLM moved its tool parsers: find their registry and update VLLM_TOOL_PARSERS"
    registered = re.findall(r'^    "([\w-]+)": \(', found[0].read_text(), re.M)
    assert sorted(registered) == sorted(VLLM_TOOL_PARSERS)
