"""What users read names rules and remedies, not the internal notes they came from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from doit_cli import doit

ROOT = Path(__file__).resolve().parent.parent
JARGON = re.compile(r"\bseed[ -]0\d\d\b|\bseed-?0\d\d's\b|\bseeds?/", re.I)


def user_facing_files():
    yield ROOT / "README.md"
    yield from (ROOT / "conf").rglob("*.yaml")
    yield from (p for p in (ROOT / "recipes").glob("*.yaml"))
    yield from (ROOT / "templates").rglob("*")
    yield from (p for p in (ROOT / "src" / "llmbuild").rglob("*.py") if "_llama_cpp" not in p.parts)


def test_no_internal_note_names_in_docs_configs_templates_or_messages():
    found = [f"{path.relative_to(ROOT)}: {match.group(0)!r}" for path in user_facing_files() if path.is_file()
             for match in JARGON.finditer(path.read_text(encoding="utf-8", errors="replace"))]
    assert found == []


def test_doit_help_and_list_name_no_internal_note(tmp_path):
    for command in ("build", "size", "preview", "plan", "sweep"):
        text = doit("help", command).stdout
        assert not JARGON.search(text), (command, text)
    for extra in ((), ("--all", "recipe=demo-dpo")):   # a pipeline's earlier stages and the quant ladder
        text = doit("list", *extra, store=tmp_path).stdout
        assert "slot" not in text, "a plan slot is llmbuild's own word: `doit list` shows the stage and its label"


def test_options_are_named_for_what_they_set():
    """lora=seed001 and train=seed001 (named after a note, meaning nothing to a user) are gone;
    their settings are lora=r16-all-proj and train=linear-60-steps."""
    from llmbuild.config.compose import compose
    from llmbuild.errors import ConfigError

    for group, new in (("lora", "r16-all-proj"), ("train", "linear-60-steps")):
        with pytest.raises(ConfigError, match=rf"{group}.*seed001.*{new}"):
            compose(ROOT, [f"{group}=seed001"])


def test_lora_alpha_follows_the_rank_unless_set():
    from llmbuild.config.compose import compose

    assert compose(ROOT).cfg.lora.alpha == 16
    assert compose(ROOT, ["lora.r=16"]).cfg.lora.alpha == 32
    assert compose(ROOT, ["lora=qv", "lora.r=32"]).cfg.lora.alpha == 64
    assert compose(ROOT, ["lora.r=16", "lora.alpha=8"]).cfg.lora.alpha == 8
