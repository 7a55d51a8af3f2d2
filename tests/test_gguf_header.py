"""The GGUF header reader (adapters/gguf_header.py) against gguf-py's own GGUFReader, and what it
says of a file that is not a readable GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbuild.adapters import gguf_header, gguf_import
from llmbuild.adapters.llama_cpp import CONVERTER_DIR
from llmbuild.errors import ConfigError, StageError

from tiny_model import SMOLLM2_GGUF

LLAMA_SPM = CONVERTER_DIR / "models" / "ggml-vocab-llama-spm.gguf"   # SentencePiece: float scores, token types


@pytest.fixture(scope="module")
def smollm2_reader():
    from gguf import GGUFReader

    return GGUFReader(str(SMOLLM2_GGUF))


def _contents(reader, arrays: bool = True) -> dict:
    from gguf import GGUFValueType

    return {name: field.contents() for name, field in reader.fields.items()
            if not name.startswith("GGUF.") and (arrays or field.types[0] != GGUFValueType.ARRAY)}


def _shapes(reader) -> dict:
    return {tensor.name: tuple(int(d) for d in tensor.shape) for tensor in reader.tensors}


def test_fields_agree_with_gguf_py(smollm2_reader):
    assert gguf_header.read_fields(SMOLLM2_GGUF) == _contents(smollm2_reader)
    assert gguf_header.read_fields(SMOLLM2_GGUF, lambda key: key.startswith("general.")) == {
        name: value for name, value in _contents(smollm2_reader).items() if name.startswith("general.")}


def test_sentencepiece_fields_agree_with_gguf_py():
    from gguf import GGUFReader

    if not LLAMA_SPM.is_file():
        pytest.skip(f"{LLAMA_SPM} is missing: llama.cpp's test vocabularies are unpacked at install")
    assert gguf_header.read_fields(LLAMA_SPM) == _contents(GGUFReader(str(LLAMA_SPM)))


def test_header_agrees_with_gguf_py(smollm2_reader):
    metadata, tensors = gguf_header.read_gguf_header(SMOLLM2_GGUF)
    assert metadata == _contents(smollm2_reader, arrays=False)
    assert tensors == _shapes(smollm2_reader) and list(tensors) == list(_shapes(smollm2_reader))


def test_the_whole_file_keeps_each_fields_types(smollm2_reader):
    fields, tensors = gguf_header.read_whole(SMOLLM2_GGUF)
    assert {name: field.value for name, field in fields.items()} == _contents(smollm2_reader)
    assert {name: (field.type, field.item_type) for name, field in fields.items()} == {
        name: (field.types[0], field.types[-1] if len(field.types) > 1 else None)
        for name, field in smollm2_reader.fields.items() if not name.startswith("GGUF.")}
    assert [tensor.name for tensor in tensors] == list(_shapes(smollm2_reader))


@pytest.mark.parametrize("big_endian", [False, True], ids=["little-endian", "big-endian"])
def test_either_byte_order_reads_as_gguf_py_reads_it(tmp_path, big_endian):
    import gguf
    import numpy

    path = tmp_path / "tiny.gguf"
    order = gguf.GGUFEndian.BIG if big_endian else gguf.GGUFEndian.LITTLE
    writer = gguf.GGUFWriter(str(path), "llama", endianess=order)
    writer.add_uint32("llama.block_count", 2)
    writer.add_uint64("x.count", 2**40)
    writer.add_float32("llama.rope.freq_base", 10000.5)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_string("general.name", "tiny ünïcode")
    writer.add_array("tokenizer.ggml.scores", [0.5, -1.25])
    writer.add_array("tokenizer.ggml.tokens", ["a", "b c"])
    writer.add_tensor("token_embd.weight", numpy.arange(6, dtype=numpy.float32).reshape(3, 2))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(str(path))
    assert gguf_header.read_fields(path) == _contents(reader)
    assert gguf_header.read_gguf_header(path) == (_contents(reader, arrays=False), _shapes(reader))
    assert gguf_header.read_gguf_header(path)[1] == {"token_embd.weight": (2, 3)}   # innermost first


def _damaged(tmp_path: Path) -> dict[str, Path]:
    with open(SMOLLM2_GGUF, "rb") as source:
        head = source.read(300_000)   # inside the vocabulary
    files = {"truncated": head, "not GGUF": b"GGML" + head[4:], "empty": b""}
    for name, data in files.items():
        (tmp_path / f"{name}.gguf").write_bytes(data)
    return {name: tmp_path / f"{name}.gguf" for name in files}


def test_a_damaged_file_is_one_error_of_its_callers_layer(tmp_path):
    for path in _damaged(tmp_path).values():
        with pytest.raises(ValueError):
            gguf_header.read_fields(path)
        with pytest.raises(ConfigError, match=rf"^{path}: cannot read it as a GGUF file \(.+\)$"):
            gguf_header.read_gguf_header(path)
        with pytest.raises(StageError, match=r"cannot be read as a GGUF .*damaged or incomplete: download it again$"):
            gguf_import.read_vocab(path)
    with pytest.raises(ConfigError, match="not GGUF's magic"):
        gguf_header.read_gguf_header(tmp_path / "not GGUF.gguf")
    with pytest.raises(ConfigError, match=r"\(it ends at byte 300000, inside its header\)$"):
        gguf_header.read_gguf_header(tmp_path / "truncated.gguf")
    with pytest.raises(ConfigError, match=r"\(it is 0 bytes long, shorter than a GGUF header\)$"):
        gguf_header.read_gguf_header(tmp_path / "empty.gguf")
