"""Prompt-format parity for every chat family, as the parity stage checks it: for each conversation
of the suite, the prompt before its last answer is the same through the publisher's own template,
LLaMA-Factory's encoding of the training sample the train stage writes, transformers on the
merged model's template and llama-cpp-python on the GGUF's; every trained answer ends at a stop.
A template that drifts between training and serving is caught with a diff."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import pytest

from llmbuild.adapters import hf_tokenizer, llama_cpp, llamafactory
from llmbuild.chat import parity
from llmbuild.chat.conversation import turn_pieces
from llmbuild.chat.setup import with_system
from llmbuild.chat.templates import hf_chat_template
from llmbuild.facts.chat_families import FAMILIES, builtin

from families import BUILTIN_TOKENS, OFFICIALS, REJECTS, official_text
from tiny_model import SMOLLM2_GGUF

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = "You are a helpful assistant."
pytestmark = pytest.mark.slow  # imports LLaMA-Factory


@functools.cache
def _smollm2_tokenizer():
    from llmbuild.adapters.gguf_import import build_tokenizer, read_vocab

    return build_tokenizer(read_vocab(SMOLLM2_GGUF))


def real_tokenizer(bos: str | None, eos: str):
    """SmolLM2's real byte-level BPE tokenizer, with the family's BOS and EOS as special tokens (a copy
    of the one built from the GGUF once per process)."""
    tokenizer = copy.deepcopy(_smollm2_tokenizer())
    tokenizer.add_special_tokens({"eos_token": eos, **({"bos_token": bos} if bos else {})})
    return tokenizer


def renderers(written: str, own: str | None, bos: str | None, eos: str, family: str, system: str | None = None,
              served: str | None = None):
    """The parity stage's renderers: `written` is the template trained with and written into the
    merged model; `served` the one in the GGUF (default: the same); `own` the publisher's."""
    tokenizer = real_tokenizer(bos, eos)
    render = hf_tokenizer.template_renderer(tokenizer, written)
    stops = list(dict.fromkeys([*FAMILIES[family].stop, eos]))

    def pieces(conversation):
        return turn_pieces(render, conversation.openai_messages(), conversation.tools, stops)[-1]

    merged = real_tokenizer(bos, eos)
    merged.chat_template = written
    out = {"the model's own template": parity.prompt_renderer(hf_tokenizer.template_renderer(tokenizer, own), system)}
    out.update({
        "llamafactory (training)": llamafactory.training_renderer(real_tokenizer(bos, eos), pieces),
        "transformers (merged model)": parity.prompt_renderer(hf_tokenizer.template_renderer(merged)),
        "llama-cpp-python (GGUF)": parity.prompt_renderer(llama_cpp.chat_formatter(served or written, bos or "", eos)),
    })
    return out, pieces, stops


def check(results, conversations, pieces, stops):
    compared = [r for r in results if r.renderings]
    assert compared and all(r.agrees for r in compared), parity.report(results)
    accepted = [c for c, r in zip(conversations, results, strict=True) if r.renderings]
    assert parity.trained_answer_problems(accepted, pieces, stops) == []


@pytest.mark.parametrize("official", OFFICIALS, ids=lambda o: o.id)
@pytest.mark.parametrize("system", [None, SYSTEM], ids=["template's system", "prompt.system"])
def test_the_publishers_template_trains_and_serves_identically(official, system):
    own = official_text(official.file)
    family = FAMILIES[official.family]
    conversations = parity.suite(family.tools, family.reasoning)
    rendering, pieces, stops = renderers(with_system(own, system), own, official.bos, official.eos, family.name,
                                         system)
    results = parity.compare(conversations, rendering)
    if official.system is REJECTS and system is not None:   # Gemma 2 refuses every system message
        assert not any(r.renderings for r in results), "the train stage names the row the template rejects"
        return
    check(results, conversations, pieces, stops)


@pytest.mark.parametrize("family", builtin())
def test_llmbuilds_own_templates_train_and_serve_identically(family):
    bos, eos = BUILTIN_TOKENS[family]
    name = FAMILIES[family].chat_template
    written = hf_chat_template((ROOT / "templates" / name).read_text(encoding="utf-8"), SYSTEM, name)
    conversations = parity.suite(FAMILIES[family].tools, FAMILIES[family].reasoning)
    rendering, pieces, stops = renderers(written, written, bos, eos, family)
    check(parity.compare(conversations, rendering), conversations, pieces, stops)


def test_a_gguf_template_that_drifts_from_training_is_caught_with_a_diff():
    written = (ROOT / "templates" / "chat" / "chatml.jinja").read_text(encoding="utf-8")
    written = hf_chat_template(written, "", "chatml.jinja")
    drifted = written.replace("'<|im_end|>\\n'", "'<|im_end|>'")  # drops a newline
    assert drifted != written
    rendering, _, _ = renderers(written, written, None, "<|im_end|>", "chatml", served=drifted)
    results = parity.compare(parity.SUITE, rendering)
    report = parity.report(results)
    assert "DIFFER: several turns" in report and "```diff" in report and "-<|im_start|>user" in report
