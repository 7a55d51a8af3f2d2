"""llama.cpp runs where its crash is one error: its work inside doit's process (a GGUF's vocabulary,
tokenizing, quantizing) runs in a forked copy of the process (adapters/native.py). A real crash:
llama.cpp's SentencePiece tokenizer throws std::out_of_range (uncaught: SIGABRT) on a character
outside a vocabulary that has no byte tokens, as a byte-level BPE vocabulary written as
SentencePiece ('default' pre-tokenizer) has none."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from llmbuild import PACKAGE_DIR
from llmbuild.adapters import native
from llmbuild.adapters.llama_cpp_vocab import token_ids
from llmbuild.errors import StageError, ToolError
from llmbuild.stages import convert

LLAMA_BPE = PACKAGE_DIR / "_llama_cpp" / "models" / "ggml-vocab-llama-bpe.gguf"


def sentencepiece_from_byte_level(source: Path, target: Path) -> Path:
    """`source`'s vocabulary (byte-level BPE, Llama 3's) declared SentencePiece with the 'default'
    pre-tokenizer: what the converter writes when it takes such a tokenizer for a SentencePiece one."""
    import gguf

    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(target, reader.fields["general.architecture"].contents())
    replaced = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default"}
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "tokenizer.ggml.merges"):
            continue
        array = field.types[0] == gguf.GGUFValueType.ARRAY
        writer.add_key_value(name, replaced.get(name, field.contents()), field.types[0],
                             sub_type=field.types[-1] if array else None)
    writer.add_array("tokenizer.ggml.scores", [0.0] * len(reader.fields["tokenizer.ggml.tokens"].contents()))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    return target


@pytest.fixture(scope="module")
def broken_vocab(tmp_path_factory) -> Path:
    if not LLAMA_BPE.is_file():
        pytest.skip(f"{LLAMA_BPE} is missing: llama.cpp's vocab files are unpacked at install")
    return sentencepiece_from_byte_level(LLAMA_BPE, tmp_path_factory.mktemp("vocab") / "broken.gguf")


def test_the_work_returns_its_value_and_raises_its_error_through_the_copy():
    """What the copy printed on stderr reaches this process's stderr (a stage's log)."""
    assert native.run_contained(lambda: {"tokens": [1, 2]}, what="testing") == {"tokens": [1, 2]}
    with pytest.raises(StageError, match="as it was raised"):
        native.run_contained(lambda: (_ for _ in ()).throw(StageError("as it was raised")), what="testing")


def test_a_crash_of_llama_cpp_is_one_error_naming_the_signal_and_its_last_words(broken_vocab):
    with pytest.raises(ToolError) as err:
        token_ids(broken_vocab, ["café 中文 🙂"])
    message = str(err.value)
    assert message.startswith("llama.cpp crashed (SIGABRT) while reading the vocabulary of broken.gguf: "), message
    assert "std::out_of_range" in message and "\n" not in message, message
    assert token_ids(LLAMA_BPE, ["café"]), "this process goes on, and llama.cpp with it"


def test_the_convert_stage_reports_a_vocabulary_llama_cpp_cannot_tokenize_with(broken_vocab):
    with pytest.raises(StageError) as err:
        convert._metadata_tokenizing(broken_vocab)
    message = str(err.value)
    assert "llama.cpp cannot tokenize ordinary text with broken.gguf's vocabulary (tokenizer.ggml.model " \
           "'llama', pre-tokenizer 'default')" in message, message
    assert "SIGABRT" in message
    assert convert._metadata_tokenizing(LLAMA_BPE).get("tokenizer.ggml.pre") == "llama-bpe"   # the real one passes


@pytest.mark.slow   # a build of the tiny model (its other stages are the shared store's)
def test_a_stage_whose_llama_cpp_aborts_fails_alone_and_keeps_nothing(tiny_build, monkeypatch):
    """doit goes on to report the failed task: no stage may take the command down with it."""
    from llmbuild.adapters import llama_cpp_vocab

    monkeypatch.setattr(llama_cpp_vocab, "open_vocab", lambda path: os.abort())
    done = tiny_build.build("prompt.temperature=0.3", ok=None)   # a Modelfile of its own: ollama runs
    assert done.returncode != 0 and "Traceback" not in done.output, done.output[-3000:]
    assert re.search(r"^\w+: llama.cpp crashed \(SIGABRT\) while reading the vocabulary of \S+\.gguf$",
                     done.output, re.M), done.output[-3000:]
    assert not list(tiny_build.store.glob("*/.*.tmp-*")), "no half-written folder left"
    monkeypatch.undo()
    assert "ollama" in tiny_build.build("prompt.temperature=0.3").ran, "a rerun builds it"


def test_a_crash_while_generating_is_one_error_and_doit_goes_on(tmp_path, monkeypatch):
    """The smoke test's generation runs in a process of its own (a forked copy of doit cannot run
    ggml's OpenMP): a worker that aborts is one line naming the signal and its last words."""
    from types import SimpleNamespace

    from llmbuild.stages import smoke

    (tmp_path / "aborting_worker.py").write_text(
        "import os, sys\nprint('GGML_ASSERT(n_tokens > 0) failed', file=sys.stderr, flush=True)\nos.abort()\n")
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setattr(smoke, "WORKER", "aborting_worker")
    out = tmp_path / "smoke.tmp"
    out.mkdir()
    with pytest.raises(ToolError) as err:
        smoke._chat(SimpleNamespace(out=out, verbose=False), {"gguf": "m.gguf"}, "m.gguf")
    message = str(err.value)
    assert message.startswith("llama.cpp chatting with m.gguf crashed (SIGABRT): GGML_ASSERT(n_tokens > 0) failed"), \
        message
    assert "\n" not in message and not list(out.glob(".scratch-*")), "one line, and no scratch left behind"
