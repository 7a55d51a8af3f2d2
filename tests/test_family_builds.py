"""End to end for every chat family: a tiny random model with a real tokenizer (llama.cpp's vocab
files) and its publisher's chat template (or none, for llmbuild's own) really trains, merges,
converts and quantizes; the parity stage finds the prompt before each answer identical through
the publisher's template, training, the merged model and the GGUF, the GGUF's token ids equal the
merged tokenizer's, and Ollama's TEMPLATE builds the same prompts in Go."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmbuild import PACKAGE_DIR

from families import official_text
from tiny_model import SMOLLM2_GGUF, build_tiny_llama

ROOT = Path(__file__).resolve().parent.parent
VOCABS = PACKAGE_DIR / "_llama_cpp" / "models"
pytestmark = pytest.mark.slow

GLM_TOKENS = ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>")
# family: (the vocabulary, the publisher's template or None, format tokens the vocabulary lacks, overrides).
# Nemo's tokenizer is BPE. Not here: gemma (tests/test_real_gguf.py builds a real Gemma 3 GGUF; a
# llama-style SentencePiece vocabulary with a space prefix does not survive the merge: the GGUF then
# tokenizes differently, which parity reports), deepseek-r1 (its template writes the BOS; with a
# tokenizer that does not add it, Ollama's TEMPLATE, which leaves the BOS to the tokenizer, prompts
# without it, which the ollama stage reports) and phi3 (see tests/test_gguf_tokenizer.py: llama.cpp
# keys Phi-3's whitespace rule on the model's name).
BUILDS = {
    "qwen": ("qwen2", "Qwen-Qwen2.5-7B-Instruct", (), ()),
    "qwen3": ("qwen2", "Qwen-Qwen3-0.6B", (), ()),
    "qwq": ("qwen2", "Qwen-QwQ-32B", (), ()),
    "llama3.1": ("llama-bpe", "meta-llama-Llama-3.2-3B-Instruct", (), ()),
    "llama3": ("llama-bpe", None, (), ("model.chat_format=llama3",)),
    "mistral": ("llama-bpe", "mistralai-Mistral-Nemo-Instruct-2407", ("[INST]", "[/INST]"), ()),
    "glm4": ("qwen2", "GLM-4.6", GLM_TOKENS, ()),
    "alpaca": ("smollm2", None, (), ("prompt.template=alpaca",)),   # replaces SmolLM2's ChatML
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
    vocab_name, template, tokens, overrides = BUILDS[family]
    model = build_tiny_llama(tmp_path / "model", vocab_gguf=vocab(vocab_name),
                             chat_template=official_text(template) if template else None, special_tokens=tokens)
    argv = [sys.executable, "-m", "doit", "build", "--db-file", str(tmp_path / "doit.db"), f"store={tmp_path / 's'}",
            "recipe=none", "model=local", f"model.path={model}", f"model.name=Tiny-{family}", "dataset.max_samples=6",
            "train.max_steps=1", "train.logging_steps=1", "train.per_device_train_batch_size=2", "smoke.max_tokens=4",
            "eval.enabled=false", "target=[ollama]", *overrides]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    out = result.stdout
    source = "the model's own chat template" if template else f"templates/chat/{family}.jinja"
    assert f"chat format: {source} ({family} family)" in out, out
    parity = re.search(rf"^  {re.escape(family)}: (\d+) conversations prompt identically in (.*?)"
                       rf"(?: \(\d+ the template rejects\))?; token ids", out, re.M)
    assert parity and int(parity[1]) >= 4, out
    assert ("the model's own template" in parity[2]) == bool(template) and "llama-cpp-python (GGUF)" in parity[2]
    assert "token ids equal llama.cpp's" in out and re.search(r"Ollama \(Go text/template\): \d+ of \d+ prompts", out)
    record = next((tmp_path / "s" / "merge").glob("*/chat.json"))
    assert json.loads(record.read_text())["family"] == family
