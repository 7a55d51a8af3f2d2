"""Prompt-format parity for every chat family: LLaMA-Factory's training template, transformers'
apply_chat_template and llama-cpp-python's Jinja formatter render the suite identically; a
template that drifts from training is caught with a diff."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmbuild.adapters import hf_tokenizer, llama_cpp, llamafactory
from llmbuild.chat import parity
from llmbuild.chat.templates import hf_chat_template
from llmbuild.facts.chat_families import FAMILIES

from tiny_model import SMOLLM2_GGUF

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = "You are a helpful assistant."
pytestmark = pytest.mark.slow  # imports LLaMA-Factory


def renderers(root: Path, family: str):
    from llmbuild.adapters.gguf_import import build_tokenizer, read_vocab

    vocab = read_vocab(SMOLLM2_GGUF)
    name = FAMILIES[family].chat_template
    template = hf_chat_template((root / "templates" / name).read_text(), SYSTEM, name)
    served = build_tokenizer(vocab)
    served.chat_template = template
    trained = build_tokenizer(vocab)
    return {"llamafactory": llamafactory.training_renderer(trained, FAMILIES[family].llamafactory_template, SYSTEM),
            "transformers": hf_tokenizer.chat_renderer(served),
            "llama-cpp-python": parity.conversation_renderer(
                llama_cpp.chat_formatter(template, served.bos_token, served.eos_token))}


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
