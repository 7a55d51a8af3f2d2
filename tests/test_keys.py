"""Stage keys: a change invalidates exactly the stages that read it, and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmbuild.config.compose import compose
from llmbuild.plan import keys
from llmbuild.plan.graph import build_plan
from llmbuild.plan.stages import ORDER

ROOT = Path(__file__).resolve().parent.parent
DOWNSTREAM_OF_TRAIN = {"train", "merge", "convert", "parity", "imatrix", "quantize", "ollama", "smoke", "eval",
                       "report"}
DOWNSTREAM_OF_IMATRIX = {"imatrix", "quantize", "ollama", "smoke", "eval", "report"}


def changed(plan_a, plan_b) -> set[str]:
    stages = set(plan_a.nodes) | set(plan_b.nodes)
    return {s for s in ORDER if s in stages and plan_a.nodes.get(s) != plan_b.nodes.get(s)}


@pytest.mark.parametrize("override, expected", [
    ("quant=q8_0", {"quantize", "ollama", "smoke", "eval", "report"}),
    ("quant.convert_type=bf16", {"convert", "parity", "imatrix", "quantize", "ollama", "smoke", "eval", "report"}),
    ("quant.imatrix_ctx=256", DOWNSTREAM_OF_IMATRIX),
    ("quant.imatrix_chunks=4", DOWNSTREAM_OF_IMATRIX),
    ("quant.calibration=[data/demo/harbour.txt]", DOWNSTREAM_OF_IMATRIX),   # a calibration file: no training
    ("quant.imatrix=none", DOWNSTREAM_OF_IMATRIX),                          # and no imatrix node at all
    ("+quant.tensor_types={{attn_v: q8_0}}", {"quantize", "ollama", "smoke", "eval", "report"}),
    ("quant.output_tensor_type=q8_0", {"quantize", "ollama", "smoke", "eval", "report"}),
    ("prompt.temperature=0.2", {"ollama", "report"}),   # the report shows the resolved config
    ("prompt.top_k=20", {"ollama", "report"}),
    ("prompt.num_ctx=4096", {"ollama", "report"}),
    ("+prompt.stop=[END]", {"ollama", "report"}),
    ("prompt.system=Be terse.", DOWNSTREAM_OF_TRAIN),
    ("lora.r=16", DOWNSTREAM_OF_TRAIN),
    ("train.learning_rate=5e-4", DOWNSTREAM_OF_TRAIN),
    ("dataset.max_samples=10", {"data"} | DOWNSTREAM_OF_TRAIN),
    ("smoke.max_tokens=32", {"smoke", "report"}),
    ("eval.max_new_tokens=32", {"eval", "report"}),     # eval settings re-run eval only
    ("eval.quants=[q8_0]", {"eval", "report"}),
    ("dataset.holdout=0.2", {"data"} | DOWNSTREAM_OF_TRAIN),
    ("eval.enabled=false", {"eval", "report"}),
    ("quant.nthread=1", set()),
    ("store={tmp}/elsewhere", set()),
])
def test_one_key_change_invalidates_exactly_its_readers(plan_for, tmp_path, override, expected):
    assert changed(plan_for(), plan_for(override.format(tmp=tmp_path))) == expected


def test_same_config_same_keys(plan_for):
    assert {s: n.key for s, n in plan_for().nodes.items()} == {s: n.key for s, n in plan_for().nodes.items()}


def test_dataset_content_is_part_of_the_key(tmp_path):
    data = tmp_path / "d.jsonl"
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    data.write_text(json.dumps(row) + "\n")
    first = build_plan(compose(ROOT, [f"store={tmp_path}/s", f"dataset.path={data}"]), ROOT)
    data.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n")
    second = build_plan(compose(ROOT, [f"store={tmp_path}/s", f"dataset.path={data}"]), ROOT)
    assert changed(first, second) == {"data"} | DOWNSTREAM_OF_TRAIN


def test_tokenizer_file_of_a_local_model_is_part_of_the_key(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "tokenizer.json").write_text('{"v": 1}')
    (model / "model.safetensors").write_bytes(b"weights")
    args = [f"store={tmp_path}/s", "model=local", f"model.path={model}", "model.name=M"]
    first = build_plan(compose(ROOT, args), ROOT)
    (model / "tokenizer.json").write_text('{"v": 2}')
    second = build_plan(compose(ROOT, args), ROOT)
    assert changed(first, second) == {"base"} | DOWNSTREAM_OF_TRAIN


def test_chat_template_source_is_part_of_train_and_merge_keys(plan_for, monkeypatch):
    before = plan_for()
    real = keys.payload

    def edited(spec, cfg, upstream, inputs, templates, *rest):
        return real(spec, cfg, upstream, inputs, {k: "edited" for k in templates}, *rest)

    monkeypatch.setattr("llmbuild.plan.graph.payload", edited)
    after = plan_for()
    assert {"train", "merge", "ollama"} <= changed(before, after)
    assert "data" not in changed(before, after) and "base" not in changed(before, after)


def test_tool_versions_are_part_of_the_key(plan_for, monkeypatch):
    before = plan_for()
    real = keys.tool_version
    monkeypatch.setattr(keys, "tool_version", lambda d: "9.9" if d == "llama_cpp_python" else real(d))
    after = plan_for()
    assert changed(before, after) == {"convert", "parity", "imatrix", "quantize", "ollama", "smoke", "eval", "report"}


def test_bitsandbytes_version_is_part_of_the_key_only_for_qlora(plan_for, monkeypatch):
    before, qlora_before = plan_for(), plan_for("lora.quantization_bit=4")
    real = keys.tool_version
    monkeypatch.setattr(keys, "tool_version", lambda d: "9.9" if d == "bitsandbytes" else real(d))
    assert changed(before, plan_for()) == set()
    assert changed(qlora_before, plan_for("lora.quantization_bit=4")) == DOWNSTREAM_OF_TRAIN


def test_planning_reads_no_model_file_twice(plan_for, monkeypatch):
    plan_for()  # fills the digest cache
    calls = []
    monkeypatch.setattr("llmbuild.store.digests.file_sha256", lambda path: calls.append(path) or "x")
    plan_for()
    assert calls == [], "a no-op plan must trust size/mtime and re-hash nothing"


def test_planning_imports_no_heavy_library():
    code = (
        "import sys; from pathlib import Path; from llmbuild.config.compose import compose;"
        "from llmbuild.plan.graph import build_plan; from llmbuild.cli.tasks import tasks_for;"
        f"plan = build_plan(compose(Path({str(ROOT)!r}), ['store=/tmp/llmbuild-plan-test']), Path({str(ROOT)!r}));"
        "list(tasks_for([plan]));"
        "heavy = [m for m in ('torch', 'transformers', 'llamafactory', 'llama_cpp', 'peft') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_liger_kernels_version_is_part_of_the_key_only_when_they_train(plan_for):
    assert "liger-kernel" in plan_for("train=gpu-bf16").nodes["train"].payload["tools"]
    assert "liger-kernel" not in plan_for().nodes["train"].payload["tools"]
    assert "liger-kernel" not in plan_for("train=gpu-bf16", "train.liger_kernel=false").nodes["train"].payload["tools"]


def test_the_compile_mode_and_tritons_version_are_part_of_the_train_key(plan_for):
    plans = {mode: plan_for("train=gpu-bf16", "train.liger_kernel=false", f"train.compile={mode}")
             for mode in ("none", "layers", "model")}
    assert len({plan.nodes["train"].key for plan in plans.values()}) == 3
    assert "triton" in plans["layers"].nodes["train"].payload["tools"]
    assert "triton" not in plans["none"].nodes["train"].payload["tools"]
    assert "triton" in plan_for("train=gpu-bf16", "train.compile=none").nodes["train"].payload["tools"], \
        "Liger's kernels are Triton's"
    kernel = plan_for("train=gpu-bf16", "train.compile_rounding=kernel")
    assert kernel.nodes["train"].key != plan_for("train=gpu-bf16").nodes["train"].key, \
        "the rounding of compiled code changes the adapter"
