"""A SentencePiece tokenizer through the merge stage: LLaMA-Factory's export re-saves the tokenizer
with transformers 5, which writes neither tokenizer.model nor tokenizer_config.json's
added_tokens_decoder; llama.cpp's converter reads a SentencePiece vocabulary's scores and types only
from those (adapters/hf_tokenizer.keep_sentencepiece_vocabulary puts them back). Also llama.cpp's
Phi-3 whitespace rule, keyed on the GGUF's general.name (adapters/llama_cpp.gguf_name).

The re-save is transformers' own save_pretrained, as the export does it; the reference for token ids
is llama.cpp on the original vocabulary file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmbuild import PACKAGE_DIR
from llmbuild.adapters import gguf_import, gguf_tokenizer, hf_tokenizer
from llmbuild.adapters.llama_cpp import converter, gguf_name
from llmbuild.adapters.llama_cpp_vocab import token_ids
from llmbuild.chat import parity
from llmbuild.errors import StageError

VOCABS = PACKAGE_DIR / "_llama_cpp" / "models"
FORMAT_TOKENS = ["<start_of_turn>", "<end_of_turn>"]   # Gemma's, which Llama 2's vocabulary lacks


def _vocab(name: str) -> Path:
    path = VOCABS / f"ggml-vocab-{name}.gguf"
    if not path.is_file():
        pytest.skip(f"{path} is missing: llama.cpp's vocab files are unpacked at install; run `pip install -e .`")
    return path


def _base(folder: Path, name: str = "llama-spm", added: list[str] = FORMAT_TOKENS) -> Path:
    """A base model's tokenizer as a GGUF import writes it (tokenizer.json + tokenizer.model), with
    format tokens added after the vocabulary."""
    vocab = gguf_import.read_vocab(_vocab(name))
    tokenizer = gguf_import.build_tokenizer(vocab)
    tokenizer.add_special_tokens({"additional_special_tokens": added}, replace_extra_special_tokens=False)
    folder.mkdir(parents=True)
    gguf_tokenizer.save_tokenizer(vocab, tokenizer, folder)
    return folder


def _resaved(base: Path, folder: Path) -> Path:
    """What the export leaves: the tokenizer loaded and saved again."""
    hf_tokenizer.load_tokenizer(base).save_pretrained(folder)
    return folder


def test_the_export_drops_what_the_converter_reads(tmp_path):
    """The premise: without this, the test below would pass for nothing."""
    merged = _resaved(_base(tmp_path / "base"), tmp_path / "merged")
    assert not (merged / hf_tokenizer.SENTENCEPIECE_MODEL).exists()
    assert "added_tokens_decoder" not in json.loads((merged / "tokenizer_config.json").read_text())


def test_tokenizer_model_and_added_tokens_are_put_back(tmp_path):
    base = _base(tmp_path / "base")
    merged = _resaved(base, tmp_path / "merged")
    kept = hf_tokenizer.keep_sentencepiece_vocabulary(base, merged)
    assert kept == ["tokenizer.model", "2 added tokens in tokenizer_config.json"]
    assert (merged / "tokenizer.model").read_bytes() == (base / "tokenizer.model").read_bytes()
    decoder = json.loads((merged / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    assert [entry["content"] for entry in decoder.values()] == FORMAT_TOKENS
    assert all(entry["special"] for entry in decoder.values())
    assert hf_tokenizer.keep_sentencepiece_vocabulary(base, merged) == [], "a second call finds nothing to do"


def test_a_pipeline_stage_keeps_them_from_the_earlier_stages_merged_model(tmp_path):
    """A later stage's base is the earlier stage's merged folder: it has its own copy by then."""
    first = _resaved(_base(tmp_path / "base"), tmp_path / "merged-sft")
    hf_tokenizer.keep_sentencepiece_vocabulary(tmp_path / "base", first)
    second = _resaved(first, tmp_path / "merged-dpo")
    assert hf_tokenizer.keep_sentencepiece_vocabulary(first, second)[0] == "tokenizer.model"
    assert (second / "tokenizer.model").read_bytes() == (tmp_path / "base" / "tokenizer.model").read_bytes()


def test_a_changed_vocabulary_fails_instead_of_a_wrong_gguf(tmp_path):
    base = _base(tmp_path / "base")
    other = _base(tmp_path / "other", name="baichuan", added=[])   # another SentencePiece vocabulary
    with pytest.raises(StageError, match=r"vocabulary differs from tokenizer.model: piece \d+ .* is (missing|id \d+)"):
        hf_tokenizer.keep_sentencepiece_vocabulary(base, _resaved(other, tmp_path / "merged"))


def test_a_byte_level_tokenizer_is_left_alone(tmp_path):
    vocab = gguf_import.read_vocab(_vocab("qwen2"))
    gguf_tokenizer.save_tokenizer(vocab, gguf_import.build_tokenizer(vocab), tmp_path / "base")
    merged = _resaved(tmp_path / "base", tmp_path / "merged")
    before = sorted(p.name for p in merged.iterdir())
    assert hf_tokenizer.keep_sentencepiece_vocabulary(tmp_path / "base", merged) == []
    assert sorted(p.name for p in merged.iterdir()) == before


@pytest.mark.slow
@pytest.mark.parametrize("kept", [True, False], ids=["kept", "as-exported"])
def test_the_converted_vocabulary_tokenizes_like_the_merged_tokenizer(tmp_path, kept):
    """convert_hf_to_gguf.py --vocab-only on the re-saved folder: with what was put back, llama.cpp's
    ids equal the merged tokenizer's on the parity corpus and the format tokens; without, they do not."""
    base = _base(tmp_path / "base")
    merged = _resaved(base, tmp_path / "merged")
    if kept:
        hf_tokenizer.keep_sentencepiece_vocabulary(base, merged)
    tokenizer = hf_tokenizer.load_tokenizer(merged)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": len(tokenizer),
              "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
              "num_key_value_heads": 2, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5}
    (merged / "config.json").write_text(json.dumps(config), encoding="utf-8")
    outfile = tmp_path / "vocab.gguf"
    argv = [sys.executable, str(converter()), str(merged), "--vocab-only", "--outfile", str(outfile),
            "--model-name", "Tiny"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    texts = [*parity.TOKENIZER_CORPUS, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"]
    ours = [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    assert (token_ids(outfile, texts) == ours) == kept


def test_a_name_that_does_not_say_phi3_gets_it_when_the_tokenizer_strips_after_special_tokens():
    assert gguf_name("Tiny-assistant", True) == "Tiny-assistant (Phi-3)"
    assert gguf_name("Phi-3.5-mini-instruct-support", True) == "Phi-3.5-mini-instruct-support"
    assert gguf_name("my-PHI3-bot", True) == "my-PHI3-bot"
    assert gguf_name("Qwen-support", False) == "Qwen-support"


def test_a_name_that_says_phi3_for_a_tokenizer_that_keeps_whitespace_is_refused():
    with pytest.raises(StageError, match=r"model.name 'phi3-killer' contains 'phi3'.*Choose a model.name without"):
        gguf_name("phi3-killer", False)


def test_phi3s_tokenizer_strips_after_special_tokens_and_others_do_not():
    """What gguf_name is given: read off the tokenizer, as llama.cpp's Phi-3 vocabulary marks it."""
    phi3 = gguf_import.build_tokenizer(gguf_import.read_vocab(_vocab("phi-3")))
    assert hf_tokenizer.strips_after_special_tokens(phi3)
    assert phi3.encode("<|user|>\nHi", add_special_tokens=False) == phi3.encode("<|user|>Hi", add_special_tokens=False)
    llama = gguf_import.build_tokenizer(gguf_import.read_vocab(_vocab("llama-spm")))
    assert not hf_tokenizer.strips_after_special_tokens(llama)
