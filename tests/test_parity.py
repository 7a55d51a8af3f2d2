"""Prompt-format parity for every chat family: LLaMA-Factory's training template, transformers'
apply_chat_template and llama-cpp-python's Jinja formatter render the suite identically; a
template that drifts from training is caught with a diff."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmbuild import parity
from llmbuild.chat_families import FAMILIES
from llmbuild.chat_template import hf_chat_template
from tiny_model import SMOLLM2_GGUF

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = "You are a helpful assistant."
pytestmark = pytest.mark.slow  # imports LLaMA-Factory


def renderers(root: Path, family: str):
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from llmbuild.adapters.gguf_import import build_tokenizer, read_vocab

    vocab = read_vocab(SMOLLM2_GGUF)
    template = hf_chat_template(root, family, SYSTEM)
    served = build_tokenizer(vocab)
    served.chat_template = template
    trained = build_tokenizer(vocab)
    lf_template = get_template_and_fix_tokenizer(
        trained, DataArguments(template=FAMILIES[family].llamafactory_template, default_system=SYSTEM))
    return {"llamafactory": parity.llamafactory_renderer(lf_template, trained),
            "transformers": parity.hf_renderer(served),
            "llama-cpp-python": parity.gguf_renderer(template, served.bos_token, served.eos_token)}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_renders_the_suite_identically(family):
    results = parity.compare(parity.suite(FAMILIES[family].tools), renderers(ROOT, family))
    assert all(r.agrees for r in results), parity.report(results)
    if FAMILIES[family].tools:
        tool_prompt = results[-1].renderings["transformers"]
        assert "<tools>" in tool_prompt and "<tool_call>" in tool_prompt and "<tool_response>" in tool_prompt


def test_a_template_that_drifts_from_training_is_caught_with_a_diff(tmp_path):
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    chatml = tmp_path / "templates" / "chat" / "chatml.jinja"
    chatml.write_text(chatml.read_text().replace("'<|im_end|>\\n'", "'<|im_end|>'"))  # drops a newline
    results = parity.compare(parity.SUITE, renderers(tmp_path, "chatml"))
    assert not any(r.agrees for r in results)
    report = parity.report(results)
    assert "DIFFER: several turns" in report and "```diff" in report and "-<|im_start|>user" in report
