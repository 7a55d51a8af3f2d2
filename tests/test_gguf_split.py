"""Split GGUFs: quant.split_max_size writes llama.cpp split files that llama.cpp loads to the same
logits, a split GGUF is a valid base input (merged by llama.cpp), and every shard is in its key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmbuild.adapters import gguf_split
from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError
from llmbuild.facts.gguf_files import parse_size, shards_of
from llmbuild.plan.graph import build_plan

from tiny_model import SMOLLM2_GGUF

ROOT = Path(__file__).resolve().parent.parent


def logits(path: Path) -> np.ndarray:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False)
    ids = llm.tokenize(b"Hello there, who are you?")
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)])


def test_split_files_load_in_llama_cpp_and_merge_back(tmp_path):
    shards = gguf_split.split(SMOLLM2_GGUF, tmp_path, parse_size("40M"))
    assert [p.name for p in shards] == [f"SmolLM2-135M-Instruct.Q4_1-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    assert all(p.stat().st_size <= 40_000_000 + 10_000_000 for p in shards)  # tensor data + metadata
    assert shards_of(shards[0]) == shards
    reference = logits(SMOLLM2_GGUF)
    assert np.array_equal(logits(shards[0]), reference)
    merged = tmp_path / "merged.gguf"
    gguf_split.merge(shards[0], merged)
    assert np.array_equal(logits(merged), reference)


def test_a_missing_shard_is_named(tmp_path):
    (tmp_path / "m-00001-of-00002.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match="shards missing beside it: m-00002-of-00002.gguf. Put every"):
        gguf_split.merge(tmp_path / "m-00001-of-00002.gguf", tmp_path / "x.gguf")


def test_sizes_use_llama_cpps_syntax():
    assert parse_size("500M") == 500_000_000 and parse_size("2g") == 2_000_000_000
    with pytest.raises(ConfigError, match="500M or 2G"):
        parse_size("2GB")


def test_every_shard_of_a_split_base_is_part_of_the_key(tmp_path):
    for i in (1, 2):
        (tmp_path / f"m-{i:05d}-of-00002.gguf").write_bytes(b"GGUF" + bytes([i]))
    args = [f"store={tmp_path / 'store'}", "model=local", f"model.path={tmp_path / 'm-00001-of-00002.gguf'}",
            "model.chat_format=chatml", "model.name=M"]
    first = build_plan(compose(ROOT, args), ROOT)
    assert set(first.nodes["base"].payload["inputs"]) == {"m-00001-of-00002.gguf", "m-00002-of-00002.gguf"}
    (tmp_path / "m-00002-of-00002.gguf").write_bytes(b"GGUF-changed")
    assert build_plan(compose(ROOT, args), ROOT).nodes["base"].key != first.nodes["base"].key


def test_split_stage_exists_only_when_asked(tmp_path):
    assert "split" not in build_plan(compose(ROOT, [f"store={tmp_path}"]), ROOT).nodes
    plan = build_plan(compose(ROOT, [f"store={tmp_path}", "quant.split_max_size=2G"]), ROOT)
    assert plan.nodes["split"].payload["upstream"] == {"quantize": plan.nodes["quantize"].key}
