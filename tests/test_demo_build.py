"""The README's `doit build`: the embedded SmolLM2 demo, built from scratch, must visibly change
the model's answers (it learns the name "Quill"; the base model does not know it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from doit_cli import doit
from tiny_model import SMOLLM2_GGUF

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def test_default_build_teaches_the_demo_identity(tmp_path):
    result = doit("build", store=tmp_path / "store", process=True)   # as README's `doit build`, in a process
    assert result.ran[-1] == "package"
    # a build log a person can read: a line per task, its result, sparse progress; tools' output in logs
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) < 70, "\n".join(lines)
    assert re.search(r"^  training: \d+/\d+, loss", result.stdout, flags=re.M), "training shows progress"
    assert not [line for line in lines if line.startswith(("INFO", "[INFO", "WARNING", "Traceback"))]
    out = tmp_path / "store" / "out" / "demo"
    answers = json.loads((out / "smoke.md").resolve().with_name("answers.json").read_text())
    tuned = [a["answer"] for a in answers]
    assert sum("Quill" in answer for answer in tuned) >= 2, tuned

    import llama_cpp
    base = llama_cpp.Llama(model_path=str(SMOLLM2_GGUF), n_ctx=512, verbose=False)
    reply = base.create_chat_completion(messages=[{"role": "user", "content": answers[0]["question"]}],
                                        temperature=0.0, max_tokens=48)
    assert "Quill" not in reply["choices"][0]["message"]["content"], "the base model must not know the new name"

    # eval on the held-out rows: the fine-tune was worth it, the quant ladder is ordered by fidelity
    report = json.loads((out / "eval" / "eval.json").read_text())
    models = {m["name"]: m for m in report["models"]}
    assert list(models) == ["base", "fine-tuned", "f16", "q8_0", "q5_k_m", "q5_k_m-no-imatrix", "q4_k_m",
                            "q4_k_m-no-imatrix"]
    # the importance matrix from the demo's own training conversations: every quant closer to f16 with it,
    # by more than the 95% intervals, measured over the held-out rows and data/demo/harbour.txt
    for quant in ("q4_k_m", "q5_k_m"):
        weighted, plain = models[quant], models[f"{quant}-no-imatrix"]
        assert weighted["imatrix"] and not plain["imatrix"] and weighted["quantized"]["imatrix"]["chunks"] >= 2
        assert weighted["kld_interval"][1] < plain["kld_interval"][0], (weighted, plain)
        assert weighted["kld_interval"][0] < weighted["kld"] < weighted["kld_interval"][1]
        assert weighted["compared_tokens"] > 1000, "the held-out rows and the KLD text"
    assert models["fine-tuned"]["perplexity"] < models["base"]["perplexity"] / 5
    assert models["f16"]["perplexity"] == pytest.approx(models["fine-tuned"]["perplexity"], rel=0.02)
    assert models["q8_0"]["kld"] < models["q4_k_m"]["kld"] and models["q8_0"]["top1"] > 0.95
    assert models["fine-tuned"]["rouge_l"] > models["base"]["rouge_l"]
    assert sum("Quill" in s["answers"]["q4_k_m"] for s in report["samples"]) >= 3
    assert all(m["peak_rss_bytes"] > 0 and m["generation_tokens_per_second"] for m in models.values())
    # SmolLM2's 576-wide rows cannot be K-quants (blocks of 256): llama.cpp's fallbacks are recorded
    assert models["q4_k_m"]["quantized"]["fallback"] and models["q8_0"]["quantized"]["fallback"] == {}
    html = (out / "report" / "report.html").read_text()
    assert "q4_k_m" in html and "data:image/png;base64," in html
    assert "In the shipped q4_k_m, llama.cpp fell back to other types" in html
    assert "q4_k_m with its importance matrix: KLD" in html and "the 95% intervals do not overlap" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the report must open without network"
