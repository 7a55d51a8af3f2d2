"""Modelfile text: every value reads back exactly under Ollama's parsing rule; golden files make
any change to the rendered file a reviewed diff (UPDATE_GOLDEN=1 pytest ... rewrites them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmbuild.chat import modelfile
from llmbuild.chat.templates import ollama_template
from llmbuild.facts.chat_families import FAMILIES
from llmbuild.files.templates import TemplateDir

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.mark.parametrize("text", [
    "You are a helpful assistant.",
    "two\nlines",
    "  leading and trailing  ",
    'She said "hi" to me',
    'ends with a quote "',
    '"starts with a quote',
    'a """ block """ inside\nand more',
    "tabs\tand\ttabs",
    "<|im_end|>",
    "中文系统提示：请简洁回答。",
    "",
])
def test_quoted_values_read_back_exactly(text):
    assert modelfile.read_back(modelfile.quote(text, "x")) == text


def test_text_no_quoting_can_hold_is_an_error_not_a_broken_file():
    with pytest.raises(modelfile.ModelfileError, match="prompt.system cannot be written"):
        modelfile.quote('line one ends """\nline two ends "\nthree', "prompt.system")


def test_read_back_follows_ollamas_rule():
    assert modelfile.read_back("bare value with spaces") == "bare value with spaces"
    assert modelfile.read_back('"""a\nb"""') == "a\nb"
    assert modelfile.read_back('"a b"') == "a b"  # spaces never end a value
    assert modelfile.read_back('"a" b') is None  # never closed: Ollama reports an unexpected end
    assert modelfile.read_back('"a"\nb"') is None  # the value would end after the first line


def test_parameters_are_checked_against_ollamas_reference():
    assert modelfile.parameter_value("num_ctx", 2048.0) == "2048"
    assert modelfile.parameter_value("temperature", 1) == "1.0"
    assert modelfile.parameter_value("use_mmap", True) == "true"
    assert modelfile.parameter_value("stop", "<|im_end|>") == "<|im_end|>"
    with pytest.raises(modelfile.ModelfileError, match="not an Ollama PARAMETER"):
        modelfile.parameter_value("max_tokens", 5)


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; if intended: UPDATE_GOLDEN=1 pytest {__file__}"


@pytest.mark.parametrize("family, system, messages, license_", [
    ("chatml", "You are a helpful assistant.", [], "Apache-2.0"),
    ("qwen", 'You are Qwen.\nQuote tools with "name" keys.',
     [("user", "Hi"), ("assistant", "Hello! How can I help?")], None),
    ("llama3", "", [], "Meta Llama 3 Community License (https://llama.meta.com/llama3/license)"),
    ("alpaca", "Below is an instruction.", [], None),
])
def test_modelfile_golden(family, system, messages, license_):
    spec = modelfile.Modelfile(
        gguf_file="Model-Q4_K_M.gguf",
        template=ollama_template(TemplateDir(ROOT).text(FAMILIES[family].ollama_template), eos_token="</s>",
                                 name=FAMILIES[family].ollama_template),
        header=["golden test"], system=system,
        parameters=[("temperature", 0.7), ("top_p", 0.9), ("top_k", 40), ("repeat_penalty", 1.1), ("num_ctx", 2048),
                    ("stop", "<|im_end|>"), ("stop", "</s>")],
        messages=messages, license=license_)
    text = modelfile.render(spec, TemplateDir(ROOT))
    golden(f"Modelfile.{family}", text)
    assert modelfile.read_back(text.split("SYSTEM ", 1)[1].split("\n\nPARAMETER")[0]) == system if system else True


def test_ollama_names_are_valid_and_long_sweep_variants_stay_apart():
    from types import SimpleNamespace

    from llmbuild.plan.outputs import OLLAMA_NAME_MAX, ollama_name

    def name(variant: str, configured: str | None = None) -> str:
        cfg = SimpleNamespace(target=SimpleNamespace(ollama=SimpleNamespace(model_name=configured)))
        return ollama_name(SimpleNamespace(variant=variant, composed=SimpleNamespace(cfg=cfg)))

    assert name("demo_lora.r-16") == "demo_lora.r-16"
    assert name("demo", configured="quill") == "quill"
    long_a = "demo_lora.quantization_bit-4_train.max_steps-3_eval.enabled-false_lora.r-16"
    long_b = long_a.replace("r-16", "r-32") + "_quant-q8_0"
    a, b = name(long_a), name(long_b)
    assert a != b and len(a) <= OLLAMA_NAME_MAX and len(b) <= OLLAMA_NAME_MAX
    assert a.startswith("demo_lora.quantization_bit-4") and name(long_a) == a


def test_a_bos_that_is_also_the_turn_marker_is_the_formats_text_not_a_bos():
    """SmolLM2's BOS token is <|im_start|>, which ChatML writes before every turn: the TEMPLATE writes it
    as part of each turn and gets no extra one; DeepSeek-R1's BOS, written once in front and not added
    by the tokenizer, is written by the TEMPLATE."""
    from types import SimpleNamespace

    from llmbuild.stages.ollama import _bos_left_to_template, _without_bos

    chatml = lambda messages, tools, add: "".join(  # noqa: E731
        f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"
    r1 = lambda messages, tools, add: "<｜begin▁of▁sentence｜>" + "".join(  # noqa: E731
        f"<｜User｜>{m['content']}" for m in messages) + "<｜Assistant｜>"
    smollm = SimpleNamespace(bos_token="<|im_start|>", adds_bos=False)
    assert _bos_left_to_template(chatml, smollm) == ""
    assert _bos_left_to_template(r1, SimpleNamespace(bos_token="<｜begin▁of▁sentence｜>", adds_bos=False)) == \
        "<｜begin▁of▁sentence｜>"
    assert _bos_left_to_template(r1, SimpleNamespace(bos_token="<｜begin▁of▁sentence｜>", adds_bos=True)) == ""
    added = SimpleNamespace(bos_token="<|im_start|>", adds_bos=True)
    messages = [{"role": "user", "content": "Hi"}]
    assert _without_bos(chatml, added)(messages, [], True) == chatml(messages, [], True), "a turn marker stays"
    assert _without_bos(r1, SimpleNamespace(bos_token="<｜begin▁of▁sentence｜>", adds_bos=True))(
        messages, [], True) == "<｜User｜>Hi<｜Assistant｜>"
