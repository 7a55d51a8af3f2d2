"""Importance-matrix quantization, per-tensor types and every llama.cpp file type: end to end on the
session's tiny build (its training is reused: these build only imatrix and quantize stages), and the
rules checked before anything is built."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from llmbuild.facts.quant_types import IMATRIX_REQUIRED, QUANT_TYPES

AUTO = "quant.imatrix=auto"   # the session's tiny build says none (doit_cli.TINY); the default is auto
AFTER_IMATRIX = ["imatrix", "quantize", "ollama", "smoke", "package"]


def _record(done, name: str = "Tiny-Llama-Q4_K_M.gguf") -> dict:
    return json.loads(((done.out / name).resolve().parent / "quantize.json").read_text())


@pytest.mark.slow
def test_imatrix_from_the_training_samples_and_a_calibration_edit(tiny_build, fresh_store, tmp_path):
    built = tiny_build.build(AUTO, store=fresh_store)
    assert built.ran == AFTER_IMATRIX, built.tail()
    assert "imatrix.gguf: " in built.stdout and "chunks of" in built.stdout and "training samples" in built.stdout
    record = _record(built)
    matrix = record["imatrix"]
    assert matrix["source"] == "training samples" and matrix["samples"] > 0 and matrix["chunks"] >= 2
    assert record["bits_per_weight"] > 4 and record["quantized_tensors"] > 0
    (artifact,) = fresh_store.glob("imatrix/*/imatrix.gguf")
    text = (artifact.parent / "calibration.txt").read_text()
    assert "<|im_start|>" in text, "calibrated on the samples as the chat template wrote them"
    plain = tiny_build.first.out / "Tiny-Llama-Q4_K_M.gguf"
    assert (built.out / "Tiny-Llama-Q4_K_M.gguf").read_bytes() != plain.read_bytes(), "the matrix changed rounding"

    # a calibration file of the user's: imatrix and quantize again, no training; its edit likewise
    extra = tmp_path / "calibration.txt"
    extra.write_text("The harbour master counts the boats at dawn. " * 40)
    with_file = tiny_build.build(AUTO, f"quant.calibration=[{extra}]", store=fresh_store)
    assert with_file.ran == AFTER_IMATRIX, with_file.tail()
    assert _record(with_file)["imatrix"]["calibration_files"] == ["calibration.txt"]
    extra.write_text("Tides rise twice a day; the lighthouse keeper writes them down. " * 40)
    edited = tiny_build.build(AUTO, f"quant.calibration=[{extra}]", store=fresh_store)
    assert edited.ran == AFTER_IMATRIX and "train" not in edited.ran
    assert tiny_build.build(AUTO, f"quant.calibration=[{extra}]", store=fresh_store).ran == []

    sized = tiny_build.build(AUTO, command="size", store=fresh_store)   # bits per weight as built
    assert re.search(r"^  q4_k_m\s+\d+\.\d+\s+yes", sized.stdout, re.M), sized.stdout[-1500:]

    # q8_0's quantizer reads no matrix: the same artifact as without one (no imatrix stage in its plan)
    plan = tiny_build.build(AUTO, "quant=q8_0", command="plan", store=fresh_store)
    assert not re.search(r"^\s+imatrix\s", plan.stdout, re.M) and re.search(r"^\s+quantize\s", plan.stdout, re.M)
    # an i-quant shares the matrix the q4_k_m build made
    iq = tiny_build.build(AUTO, "quant=iq4_xs", store=fresh_store)
    assert iq.ran == ["quantize", "ollama", "smoke", "package"], iq.tail()
    assert _record(iq, "Tiny-Llama-IQ4_XS.gguf")["types"].get("iq4_xs")

    # a matrix file of the user's own: keyed by its content, and the same bytes as the computed one
    own = tmp_path / "mine.gguf"
    own.write_bytes(artifact.read_bytes())
    mine = tiny_build.build(f"quant.imatrix={own}", store=fresh_store)
    assert mine.ran == AFTER_IMATRIX, mine.tail()
    assert (mine.out / "Tiny-Llama-Q4_K_M.gguf").read_bytes() == (built.out / "Tiny-Llama-Q4_K_M.gguf").read_bytes()
    moved = tmp_path / "moved.gguf"
    own.rename(moved)
    assert tiny_build.build(f"quant.imatrix={moved}", store=fresh_store).ran == ["package"], "same content, same key"


@pytest.mark.slow
def test_per_tensor_types_and_their_errors(tiny_build, fresh_store):
    done = tiny_build.build("+quant.tensor_types={attn_v: q8_0, ffn_down: q6_k}", "quant.output_tensor_type=q8_0",
                           store=fresh_store)
    assert done.ran == ["quantize", "ollama", "smoke", "package"], done.tail()
    log = ((done.out / "Tiny-Llama-Q4_K_M.gguf").resolve().parent / "quantize.log").read_text()
    assert "--tensor-type attn_v=q8_0" in log and "--output-tensor-type q8_0" in log
    types = _record(done)["types"]
    assert types.get("q8_0") and types.get("q6_K")

    nothing = tiny_build.build("+quant.tensor_types={attn_vv: q8_0}", store=fresh_store, ok=False)
    assert nothing.returncode != 0 and "Traceback" not in nothing.output
    assert "quant.tensor_types.attn_vv: matches no tensor of this model" in nothing.output
    assert "attn_v" in nothing.output and "ffn_down" in nothing.output, "the model's kinds of tensor are named"


@pytest.mark.parametrize("overrides, says", [
    (("quant=iq3_xxs", "quant.imatrix=none"), "'quant.type' = 'iq3_xxs'"),
    (("eval.quants=[q2_k]", "quant.imatrix=none", "eval.enabled=true"), "'eval.quants[0]' = 'q2_k'"),
    (("+quant.tensor_types={attn_v: q4_k_m}",), "q4_k_m is a file type; its tensors' type is q4_k"),
    (("+quant.tensor_types={attn_v: q9_k}",), "not a ggml tensor type"),
    (("+quant.tensor_types={*attn_v: q8_0}",), "not a regular expression"),
    (("quant.output_tensor_type=iq2_xs", "quant.imatrix=none"), "only with an importance matrix"),
    (("quant=iq4_xs", "target=ollama", "target.ollama.adapter=true"), "has no importance matrix"),
    (("quant.imatrix_chunks=1",), "needs 2 chunks or more"),
    (("quant.imatrix=no/such/file.gguf",), "quant.imatrix: no such file"),
    (("quant.calibration=[no/such.txt]",), "quant.calibration[0]: no such file"),
])
def test_quant_settings_are_checked_before_anything_is_built(plan_for, overrides, says):
    from llmbuild.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        plan_for(*overrides)
    assert says in str(err.value)


def test_every_type_llama_cpp_writes_is_an_option_and_the_rule_for_its_matrix(plan_for):
    from llmbuild.adapters.llama_cpp_tools import QUANTIZE, program

    listed = subprocess.run([str(program(QUANTIZE)), "--help"], capture_output=True, text=True).stdout
    # `  15  or  Q4_K_M  :  4.58G, +0.1754 ppl @ Llama-3-8B`, less its aliases (`Q4_K  : alias for Q4_K_M`)
    written = {match[1].lower() for match in re.finditer(r"^\s+\d+\s+or\s+(\w+)\s*:\s*(.*)$", listed, re.M)
               if not match[2].startswith("alias")}
    assert written == set(QUANT_TYPES), "every file type the bundled llama-quantize writes, and no other"
    required = {name for name, q in QUANT_TYPES.items() if q.imatrix == IMATRIX_REQUIRED}
    assert {"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "iq3_xxs", "iq3_xs", "iq3_s", "iq3_m",
            "iq4_xs", "iq4_nl", "q2_k", "q2_k_s"} == required
    plan = plan_for("quant=iq2_m")
    assert "imatrix" in plan.nodes and "imatrix" in plan.nodes["quantize"].payload["upstream"]
    plan = plan_for("quant=q8_0", "eval.quants=[]")
    assert "imatrix" not in plan.nodes and "imatrix" not in plan.nodes["quantize"].payload["upstream"]
    plan = plan_for("quant=q4_k_m", "eval.quants=[q8_0]", "eval.compare_imatrix=true")
    assert "quantize@q4_k_m-no-imatrix" in plan.nodes and "quantize@q8_0-no-imatrix" not in plan.nodes
    assert "imatrix" not in plan.nodes["quantize@q4_k_m-no-imatrix"].payload["upstream"]
    plan = plan_for("quant=iq4_xs", "eval.quants=[q4_k_m]", "eval.compare_imatrix=true")
    assert "quantize@q4_k_m-no-imatrix" in plan.nodes and "quantize@iq4_xs-no-imatrix" not in plan.nodes


def test_quantize_log_and_tensor_patterns(tmp_path):
    from llmbuild.errors import StageError
    from llmbuild.stages.quantize import check_patterns

    names = ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_v.weight", "blk.0.ffn_down.weight",
             "blk.0.attn_norm.weight", "output.weight"]
    check_patterns({"attn_v": "q8_0", r"blk\.0\.ffn_down": "q6_k"}, names)
    with pytest.raises(StageError) as err:
        check_patterns({"attn_vv": "q8_0"}, names)
    assert "attn_q, attn_v, ffn_down" in str(err.value) and "token_embd" in str(err.value)
