"""End to end for every chat family: a tiny random model with a real tokenizer (llama.cpp's vocab
files) and its publisher's chat template (or none, for llmbuild's own) really trains, merges,
converts and quantizes; the parity stage finds the prompt before each answer identical through
the publisher's template, training, the merged model and the GGUF, the GGUF's token ids equal the
merged tokenizer's, and Ollama's TEMPLATE builds the same prompts in Go."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmbuild import PACKAGE_DIR

from doit_cli import doit
from families import official_text
from tiny_model import SMOLLM2_GGUF, build_tiny_llama

ROOT = Path(__file__).resolve().parent.parent
VOCABS = PACKAGE_DIR / "_llama_cpp" / "models"
pytestmark = pytest.mark.slow

GLM_TOKENS = ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")
GEMMA_TOKENS = ("<start_of_turn>", "<end_of_turn>")
MISTRAL_SMALL_TOKENS = ("[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]",
                        "[/AVAILABLE_TOOLS]", "[TOOL_CALLS]", "[CALL_ID]", "[ARGS]", "[TOOL_RESULTS]", "[TOOL_CONTENT]",
                        "[/TOOL_RESULTS]")
R1_BOS = "<｜begin▁of▁sentence｜>"
R1_TOKENS = (R1_BOS, "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜tool▁calls▁begin｜>",
             "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>",
             "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>")


@dataclass(frozen=True)
class Build:
    vocab: str                          # llama.cpp's ggml-vocab-<vocab>.gguf (smollm2: SmolLM2's GGUF)
    template: str | None                # the publisher's template (families.OFFICIAL), None: llmbuild's own
    tokens: tuple[str, ...] = ()        # format tokens the vocabulary lacks
    overrides: tuple[str, ...] = ()
    model: dict = field(default_factory=dict)   # build_tiny_llama's bos, eos, add_bos: the model's own


# Nemo's tokenizer is BPE; gemma and phi3 are SentencePiece (tokenizer.model beside tokenizer.json).
BUILDS = {
    "qwen": Build("qwen2", "Qwen-Qwen2.5-7B-Instruct"),
    "qwen3": Build("qwen2", "Qwen-Qwen3-0.6B"),
    "qwq": Build("qwen2", "Qwen-QwQ-32B"),
    "llama3.1": Build("llama-bpe", "meta-llama-Llama-3.2-3B-Instruct"),
    "llama3": Build("llama-bpe", None, overrides=("model.chat_format=llama3",)),
    "mistral": Build("llama-bpe", "mistralai-Mistral-Nemo-Instruct-2407", ("[INST]", "[/INST]")),
    "glm4": Build("qwen2", "GLM-4.6", GLM_TOKENS),
    # DeepSeek-V3.1's own vocabulary is not among llama.cpp's test files: Llama 3's, which adds the BOS too
    "deepseek-v3": Build("llama-bpe", "deepseek-ai-DeepSeek-V3.1", R1_TOKENS[1:],
                         model=dict(eos="<｜end▁of▁sentence｜>")),
    "phi4": Build("qwen2", "microsoft-phi-4", ("<|im_sep|>",)),   # Phi-4's tokenizer: byte-level BPE, no BOS
    "mistral-small": Build("llama-bpe", "Mistral-Small-3.2-24B-Instruct-2506", MISTRAL_SMALL_TOKENS),
    "alpaca": Build("smollm2", None, overrides=("prompt.template=alpaca",)),   # replaces SmolLM2's ChatML
    # Llama 2's SentencePiece pieces, as Gemma's tokenizer uses them: no space prefix
    "gemma": Build("llama-spm", "google-gemma-2-2b-it", GEMMA_TOKENS, model=dict(architecture="gemma2")),
    # a name that does not say Phi-3: llama.cpp strips the whitespace after Phi-3's special tokens only
    # for a GGUF named so (the convert stage names it)
    "phi3": Build("phi-3", "microsoft-Phi-3.5-mini-instruct", overrides=("model.name=Tiny-assistant",)),
    # the Llama distill's tokenizer: Llama 3's vocabulary, which adds the BOS (the template writes it too)
    "deepseek-r1": Build("llama-bpe", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B", R1_TOKENS[1:],
                         model=dict(eos="<｜end▁of▁sentence｜>")),
}


def vocab(name: str) -> Path:
    if name == "smollm2":
        return SMOLLM2_GGUF
    path = VOCABS / f"ggml-vocab-{name}.gguf"
    if not path.is_file():
        pytest.skip(f"{path} is missing: llama.cpp's vocab files are unpacked at install; run `pip install -e .`")
    return path


@pytest.mark.parametrize("family", list(BUILDS))
def test_a_model_of_the_family_builds_with_its_own_template(tmp_path, family):
    out = _build(tmp_path, family, BUILDS[family])
    if family == "phi3":   # general.name says Phi-3, so llama.cpp strips whitespace as the tokenizer does
        assert "named 'Tiny-assistant (Phi-3)' so that llama.cpp drops the whitespace" in out, out
    if family == "deepseek-r1":   # the tokenizer adds the BOS: the TEMPLATE leaves it to the runner
        assert "itself: the tokenizer does not add it" not in _modelfile(tmp_path)


def test_a_template_that_writes_the_bos_gets_it_from_the_modelfile_when_the_tokenizer_does_not_add_it(tmp_path):
    """DeepSeek-R1's template writes the BOS, Ollama's TEMPLATE leaves it to the runner: with a tokenizer
    that does not add it (add_bos_token false; Qwen2's vocabulary), the Modelfile's TEMPLATE writes
    it, and the ollama stage finds the prompts as trained."""
    _build(tmp_path, "deepseek-r1", Build("qwen2", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B", R1_TOKENS,
                                          model=dict(bos=R1_BOS, eos="<｜end▁of▁sentence｜>", add_bos=False)))
    text = _modelfile(tmp_path)
    assert 'TEMPLATE """<｜begin▁of▁sentence｜>' in text and "writes <｜begin▁of▁sentence｜> itself" in text, text


def _modelfile(tmp_path: Path) -> str:
    return next((tmp_path / "s" / "ollama").glob("*/Modelfile")).read_text(encoding="utf-8")


def _build(tmp_path: Path, family: str, build: Build) -> str:
    """Build a tiny model of the family with doit; its output, after the checks every family passes."""
    template = build.template
    model = build_tiny_llama(tmp_path / "model", vocab_gguf=vocab(build.vocab),
                             chat_template=official_text(template) if template else None, special_tokens=build.tokens,
                             **build.model)
    out = doit("build", "recipe=none", "model=local", f"model.path={model}", f"model.name=Tiny-{family}",
               "dataset.max_samples=6", "train.max_steps=1", "train.logging_steps=1",
               "train.per_device_train_batch_size=2", "smoke.max_tokens=4", "eval.enabled=false", "target=[ollama]",
               *build.overrides, store=tmp_path / "s").stdout
    source = "the model's own chat template" if template else f"templates/chat/{family}.jinja"
    assert f"chat format: {source} ({family} family)" in out, out
    parity = re.search(rf"^  {re.escape(family)}: (\d+) conversations prompt identically in (.*?)"
                       rf"(?: \(\d+ the template rejects\))?; token ids", out, re.M)
    assert parity and int(parity[1]) >= 4, out
    assert ("the model's own template" in parity[2]) == bool(template) and "llama-cpp-python (GGUF)" in parity[2]
    assert "token ids equal llama.cpp's" in out and re.search(r"Ollama \(Go text/template\): \d+ of \d+ prompts", out)
    record = next((tmp_path / "s" / "merge").glob("*/chat.json"))
    assert json.loads(record.read_text())["family"] == family
    return out
