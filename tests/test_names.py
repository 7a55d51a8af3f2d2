"""Variant names: readable, short, and never shared by two configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError
from llmbuild.plan.graph import variant_name
from llmbuild.plan.outputs import ollama_name

ROOT = Path(__file__).resolve().parent.parent


def name(*overrides: str) -> str:
    return variant_name(compose(ROOT, list(overrides)))


def test_plain_overrides_read_as_they_did():
    assert name() == "demo" and name("quant=q8_0") == "demo_quant-q8_0" and name("lora.r=16") == "demo_lora.r-16"
    assert name("lora.r=16", "store=/tmp/elsewhere", "jobs.train_at_once=2") == "demo_lora.r-16"


def test_keys_that_build_nothing_name_no_variant():
    """The keys no artifact's key covers (schema.NOT_BUILT) are the keys a variant's name leaves out:
    two configurations that build the same artifacts share one name."""
    assert name("quant.nthread=2", "target.llamacpp.port=8123", "jobs.train_at_once=2") == "demo"


def test_values_that_sanitise_alike_get_different_names():
    names = {name("prompt.system=be brief"), name("prompt.system=be-brief"), name("prompt.system=be/brief")}
    assert len(names) == 3 and all(n.startswith("demo_prompt.system-") for n in names)


def test_a_model_folder_shows_its_last_part_and_stays_short():
    long = "/tmp/pytest-of-root/pytest-3/e2e0/some/deeply/nested/folder/tiny-llama"
    shown = name("model=local", f"model.path={long}", "model.name=Tiny")
    assert "tiny-llama" in shown and "pytest-of-root" not in shown and len(shown) < 80
    assert shown != name("model=local", "model.path=/elsewhere/tiny-llama", "model.name=Tiny")


def test_a_user_can_name_a_variant():
    assert name("name=quill-v2", "quant=q8_0") == "quill-v2"
    with pytest.raises(ConfigError, match="name"):
        name("name=no spaces please")


def test_ollama_names_that_lower_case_would_merge_stay_apart():
    from types import SimpleNamespace

    def ollama(variant):
        cfg = SimpleNamespace(target=SimpleNamespace(ollama=SimpleNamespace(model_name=None)))
        return ollama_name(SimpleNamespace(variant=variant, composed=SimpleNamespace(cfg=cfg)))

    assert ollama("demo_quant-q8_0") == "demo_quant-q8_0"
    assert ollama("demo_prompt.system-A") != ollama("demo_prompt.system-a")
