"""The parity stage's tokenizer check: HF ids against llama.cpp's for a multilingual corpus."""

from __future__ import annotations

from llmbuild.adapters.gguf_import import build_tokenizer, read_vocab
from llmbuild.adapters.hf_tokenizer import token_ids as hf_ids
from llmbuild.adapters.llama_cpp_vocab import token_ids
from llmbuild.chat import parity

from tiny_model import SMOLLM2_GGUF


def test_rebuilt_tokenizer_matches_llama_cpp_on_the_corpus():
    tokenizer = build_tokenizer(read_vocab(SMOLLM2_GGUF))
    specials = list(tokenizer.all_special_tokens)
    problems = parity.tokenizer_mismatches(hf_ids(tokenizer), token_ids(SMOLLM2_GGUF, parity.tokenizer_texts(specials)),
                                           specials)
    assert problems == []


def test_a_differing_vocabulary_is_reported_with_both_id_lists():
    tokenizer = build_tokenizer(read_vocab(SMOLLM2_GGUF))
    texts = parity.tokenizer_texts(["<|im_start|>"])
    problems = parity.tokenizer_mismatches(hf_ids(tokenizer), [[0] for _ in texts], ["<|im_start|>"])
    assert len(problems) == len(parity.TOKENIZER_CORPUS) + 1
    assert "llama.cpp [0]" in problems[0]
