"""vLLM checkpoints (target.vllm.quants) without running llm-compressor: schemes and their checks,
plan slots and keys, the tools' own environments, calibration samples, the served format, the
report's recommendation and the one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from llmbuild.cli.tasks import stage_context
from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError, StageError, ToolError
from llmbuild.evaluation.results import EvalResults
from llmbuild.facts.tool_envs import QUANT, VLLM
from llmbuild.facts.vllm_schemes import SCHEMES, shape_problem
from llmbuild.plan.graph import build_plan
from llmbuild.report.write import metrics_table, verdict
from llmbuild.stages import train_samples, vllm, vllm_quant

from doit_cli import doit

ROOT = Path(__file__).resolve().parent.parent


def fake_env(folder: Path, **versions: str) -> Path:
    """A virtual environment as llmbuild sees one: bin/python and package metadata."""
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_text("")
    site = folder / "lib" / "python3.11" / "site-packages"
    for name, version in versions.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return folder


@pytest.fixture
def quant_env(tmp_path, monkeypatch):
    env = fake_env(tmp_path / "quant-env", llmcompressor="0.14.0.1", **{"compressed-tensors": "0.19.0"},
                   transformers="5.17.0", torch="2.13.0+cpu")
    monkeypatch.setenv(QUANT.variable, str(env))
    return env


def plan(tmp_path, *overrides, strict=True):
    return build_plan(compose(ROOT, [f"store={tmp_path / 'store'}", "target=[ollama,vllm]", *overrides]), ROOT,
                      strict=strict)


def test_each_scheme_is_a_slot_of_its_own_and_eval_compares_them_all(tmp_path, quant_env):
    built = plan(tmp_path, "target.vllm.quants=[fp8,w4a16]")
    slots = [slot for slot, node in built.nodes.items() if node.stage == "vllm_quant"]
    assert slots == ["vllm_quant@fp8", "vllm_quant@w4a16"]
    assert {"vllm_quant@fp8", "vllm_quant@w4a16"} <= set(built.nodes["eval"].payload["upstream"])
    assert not any(s.startswith("vllm_quant@") for s in built.nodes["vllm"].payload["upstream"]), "serves merged"
    assert built.nodes["vllm_quant@fp8"].payload["env_tools"] == {
        "llmcompressor": "0.14.0.1", "compressed-tensors": "0.19.0", "transformers": "5.17.0", "torch": "2.13.0+cpu"}
    assert "env_tools" in built.nodes["eval"].payload   # eval runs the checkpoints in that environment
    assert "env_tools" not in plan(tmp_path).nodes["eval"].payload, "no checkpoints: keys as before"


def test_keys_cover_the_scheme_and_calibration_only_where_they_change_the_checkpoint(tmp_path, quant_env):
    keys = lambda *extra: {slot: node.key for slot, node in plan(tmp_path, *extra).nodes.items()}  # noqa: E731
    before = keys("target.vllm.quants=[fp8,w4a16]")
    assert before["vllm_quant@fp8"] != before["vllm_quant@w4a16"]
    assert keys("target.vllm.quants=[fp8]")["vllm_quant@fp8"] == before["vllm_quant@fp8"], "shared across lists"
    fewer = keys("target.vllm.quants=[fp8,w4a16]", "target.vllm.calibration_samples=16")
    assert fewer["vllm_quant@fp8"] == before["vllm_quant@fp8"], "fp8 is not calibrated"
    assert fewer["vllm_quant@w4a16"] != before["vllm_quant@w4a16"] and fewer["eval"] != before["eval"]
    port = keys("target.vllm.quants=[fp8,w4a16]", "target.vllm.port=9000")
    shown = ("vllm", "report")   # the serving folder, and the report that shows the whole config
    assert {s: port[s] for s in before if s not in shown} == {s: k for s, k in before.items() if s not in shown}
    newer = fake_env(tmp_path / "newer", llmcompressor="0.15.0")
    os.environ[QUANT.variable] = str(newer)
    assert keys("target.vllm.quants=[fp8,w4a16]")["vllm_quant@fp8"] != before["vllm_quant@fp8"]


def test_the_served_scheme_is_built_even_when_not_listed(tmp_path, quant_env):
    built = plan(tmp_path, "target.vllm.serve=w8a8")
    assert "vllm_quant@w8a8" in built.nodes
    assert built.nodes["vllm"].payload["upstream"]["vllm_quant@w8a8"] == built.nodes["vllm_quant@w8a8"].key


@pytest.mark.parametrize("override, message", [
    ("target.vllm.quants=[fp9]", "config key 'target.vllm.quants[0]' = 'fp9'"),
    ("target.vllm.serve=int4", "config key 'target.vllm.serve' = 'int4'"),
    ("target.vllm.calibration_samples=0", "config key 'target.vllm.calibration_samples' = 0"),
])
def test_bad_schemes_are_one_message(tmp_path, override, message):
    with pytest.raises(ConfigError) as caught:
        plan(tmp_path, override)
    assert message in str(caught.value) and "Valid" in str(caught.value) or "positive" in str(caught.value)


def test_a_missing_quant_environment_stops_planning_with_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv(QUANT.variable, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as caught:
        plan(tmp_path, "target.vllm.quants=[fp8]")
    text = str(caught.value)
    assert "nowhere is missing" in text and QUANT.setup in text and QUANT.variable in text and "\n" not in text
    assert plan(tmp_path, "target.vllm.quants=[fp8]", strict=False).nodes["vllm_quant@fp8"], "locks plan anyway"
    assert "vllm_quant@fp8" not in plan(tmp_path).nodes   # no schemes: no environment needed


def test_doit_serve_without_vllm_environment_says_so_before_building(tmp_path):
    result = doit("serve", "target=[vllm]", store=tmp_path / "store", env={VLLM.variable: str(tmp_path / "no-vllm")},
                  process=True, ok=False)
    said = result.output.strip().splitlines()
    assert len(said) == 1 and "vLLM" in said[0] and "no-vllm is missing" in said[0] and VLLM.setup in said[0], said
    assert not (tmp_path / "store" / "base").exists(), "nothing was built"


def test_schemes_with_weight_groups_need_inputs_in_whole_groups():
    assert shape_problem(SCHEMES["fp8"], {"self_attn.q_proj": 576}) is None
    assert shape_problem(SCHEMES["w8a8"], {"self_attn.q_proj": 576}) is None
    problem = shape_problem(SCHEMES["w4a16"], {"self_attn.q_proj": 576, "mlp.down_proj": 1536})
    assert problem == ("w4a16 quantizes weights in groups of 128 inputs, and these layers' inputs are not a "
                       "multiple of 128: self_attn.q_proj (576)")


def _checkpoint_inputs(tmp_path: Path, hidden: int) -> dict[str, Path]:
    from safetensors.numpy import save_file

    merge = tmp_path / "merge" / "k"
    (merge / "merged").mkdir(parents=True)
    save_file({"model.embed_tokens.weight": np.zeros((32, hidden), np.float32),
               "model.layers.0.self_attn.q_proj.weight": np.zeros((hidden, hidden), np.float32),
               "model.layers.0.mlp.down_proj.weight": np.zeros((hidden, 4 * hidden), np.float32),
               "model.norm.weight": np.zeros((hidden,), np.float32),
               "lm_head.weight": np.zeros((32, hidden), np.float32)}, str(merge / "merged" / "model.safetensors"))
    train = tmp_path / "train" / "k"
    (train / "dataset").mkdir(parents=True)
    (train / "dataset" / "samples.json").write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
                           {"from": "gpt", "value": "Hello<|im_end|>"}]}] * 3))
    return {"merge": merge, "train": train}


def test_linear_inputs_are_read_from_the_weights_headers(tmp_path):
    from llmbuild.adapters.hf_weights import linear_inputs

    inputs = _checkpoint_inputs(tmp_path, 192)
    assert linear_inputs(inputs["merge"] / "merged", ("lm_head",)) == {"self_attn.q_proj": 192, "mlp.down_proj": 768}


def test_a_scheme_the_base_model_cannot_take_fails_before_training(tmp_path, quant_env):
    from llmbuild.stages import preflight

    built = plan(tmp_path, "target.vllm.serve=w4a16-awq")
    out = tmp_path / "out"
    out.mkdir()
    base = _checkpoint_inputs(tmp_path, 192)["merge"] / "merged"
    ctx = replace(stage_context(built, "train", out), inputs={"base": base, "data": tmp_path})
    with pytest.raises(StageError) as caught:
        preflight.check_before_training(ctx.cfg, ctx.inputs["base"])
    assert str(caught.value).startswith("w4a16-awq quantizes weights in groups of 128 inputs")
    assert "This model can take fp8 or w8a8" in str(caught.value)


def test_a_model_the_scheme_cannot_take_fails_before_llm_compressor_runs(tmp_path, quant_env):
    built = plan(tmp_path, "target.vllm.quants=[w4a16]")
    out = tmp_path / "out"
    out.mkdir()
    ctx = replace(stage_context(built, "vllm_quant@w4a16", out), inputs=_checkpoint_inputs(tmp_path, 192))
    with pytest.raises(StageError) as caught:
        vllm_quant.run(ctx)
    text = str(caught.value)
    assert "self_attn.q_proj (192)" in text and "fp8 or w8a8" in text and "target.vllm.quants" in text
    assert not list(out.iterdir())


def test_calibration_samples_are_the_training_samples_as_trained(tmp_path):
    samples = tmp_path / "samples.json"
    samples.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "P1 "}, {"from": "gpt", "value": "A1"},
                           {"from": "human", "value": " P2 "}, {"from": "gpt", "value": "A2"}]},
        {"conversations": [{"from": "human", "value": "Q "}], "chosen": {"from": "gpt", "value": "good"},
         "rejected": {"from": "gpt", "value": "bad"}},
        {"text": "raw text"}]))
    assert train_samples.texts(samples, 10) == ["P1 A1 P2 A2", "Q good", "raw text"]
    assert train_samples.texts(samples, 1) == ["P1 A1 P2 A2"]
    assert train_samples.texts(samples) == ["P1 A1 P2 A2", "Q good", "raw text"]


def test_a_missing_quant_environment_is_one_tool_error_in_the_stage(tmp_path, quant_env, monkeypatch):
    built = plan(tmp_path, "target.vllm.quants=[fp8]")
    monkeypatch.setenv(QUANT.variable, str(tmp_path / "gone"))
    out = tmp_path / "out"
    out.mkdir()
    ctx = replace(stage_context(built, "vllm_quant@fp8", out), inputs=_checkpoint_inputs(tmp_path, 256))
    with pytest.raises(ToolError, match="gone is missing"):
        vllm_quant.run(ctx)


def test_the_vllm_folder_serves_the_chosen_checkpoint(tmp_path, quant_env):
    from llmbuild.chat.setup import OWN, ChatSetup

    built = plan(tmp_path, "target.vllm.quants=[fp8]", "target.vllm.serve=fp8")
    merge = tmp_path / "merge" / "k"
    (merge / "merged").mkdir(parents=True)
    (merge / "chat_template.jinja").write_text("{{ messages }}")
    (merge / "chat.json").write_text(ChatSetup("qwen", "{{ messages }}", OWN, None).to_json())
    checkpoint = tmp_path / "vllm_quant" / "k3"
    (checkpoint / "model").mkdir(parents=True)
    out = tmp_path / "vllm" / "k2"
    out.mkdir(parents=True)
    vllm.run(replace(stage_context(built, "vllm", out), inputs={"merge": merge, "vllm_quant@fp8": checkpoint}))
    argv = json.loads((out / "vllm_command.json").read_text())
    assert argv[argv.index("--model") + 1] == "../../vllm_quant/k3/model"
    script = (out / "serve.sh").read_text()
    assert 'exec "${VLLM_PYTHON:-python3}" -m vllm.entrypoints.openai.api_server --model ../../vllm_quant/k3/model' \
        in script and "the fp8 checkpoint" in script


def _model(name, kind, kld, size, top1=0.9):
    return {"name": name, "kind": kind, "quant": name, "file_size": size, "nll": 1.0, "perplexity": 2.7,
            "answer_tokens": 10, "kld": kld, "top1": top1, "exact_match": None, "rouge_l": None, "tool_call": None,
            "prompt_tokens_per_second": None, "generation_tokens_per_second": None, "peak_rss_bytes": 1,
            "quantized": None}


def _eval(*vllm_models) -> EvalResults:
    return EvalResults.from_json({"holdout": {"rows": 4, "size": 0.1, "seed": 0},
            "settings": {"max_new_tokens": 8, "kld_reference": "f16", "recommend_kld": 0.05, "n_ctx": 512,
                         "vllm_kld_reference": "fine-tuned"},
            "shipped_quant": "q4_k_m",
            "models": [_model("fine-tuned", "hf", None, 2000 * 2**20, None), _model("f16", "gguf", 0.0, 2000 * 2**20),
                       _model("q4_k_m", "gguf", 0.02, 600 * 2**20), *vllm_models],
            "samples": []})


def test_the_report_recommends_a_gguf_and_a_vllm_checkpoint():
    result = _eval(_model("fp8", "vllm", 0.004, 1000 * 2**20), _model("w4a16", "vllm", 0.03, 550 * 2**20),
                   _model("w4a16-awq", "vllm", 0.09, 540 * 2**20))
    said = " ".join(verdict(result))
    assert "Recommended quant: q4_k_m (600.0 MiB)" in said
    assert ("For GPU serving with vLLM: w4a16 (550.0 MiB, 28% of the merged model), the smallest checkpoint with "
            "mean KLD below 0.05 vs the merged model (KLD 0.0300") in said
    assert "target.vllm.serve=w4a16" in said
    header, rows = metrics_table(result)
    assert [row[0] for row in rows][-3:] == ["fp8 (vLLM)", "w4a16 (vLLM)", "w4a16-awq (vLLM)"]


def test_the_report_says_when_no_vllm_checkpoint_is_close_enough():
    said = " ".join(verdict(_eval(_model("w4a16", "vllm", 0.2, 550 * 2**20))))
    assert "no checkpoint has mean KLD below 0.05 vs the merged model: none is recommended" in said
    assert "target.vllm.serve=merged" in said
    assert "vLLM" not in " ".join(verdict(_eval())), "no checkpoints, no sentence about them"


def test_the_readme_set_up_makes_each_tool_environment_as_the_messages_say():
    """README's set-up runs installer/setup with no environment named (all of them); a missing tool
    environment's message names the same script with that environment, which the script makes."""
    setup = (ROOT / "README.md").read_text().split("\n## Set up\n", 1)[1].split("```sh\n", 1)[1].split("```")[0]
    assert re.search(r"^installer/setup(?: &&|$)", setup, re.M), setup
    script = (ROOT / "installer" / "setup").read_text()
    for env in (QUANT, VLLM):
        assert env.setup == f"installer/setup {env.name}", env.setup
        assert re.search(rf"^{env.name}\(\) {{\n  \.venv-{env.name}/bin/pip install -r installer/{env.name}-env\.txt$",
                         script, re.M), f"installer/setup makes no {env.folder}"
    done = subprocess.run([str(ROOT / "installer" / "setup"), "cuda"], capture_output=True, text=True)
    assert done.returncode == 2 and "choose from main, quant, vllm" in done.stderr


def test_llm_compressors_progress_bars_become_progress_updates():
    from llmbuild.adapters.llm_compressor import _progress

    seen = []
    _progress("Compressing model:  66%|######5   | 139/210 [00:11<00:07,  9.99it/s]", lambda *a: seen.append(a))
    _progress("(1/3): Calibrating:  10%|#| 3/36 [00:01<00:09]\r(1/3): Calibrating: 100%|##| 36/36 [00:02<00:00]\r",
              lambda *a: seen.append(a))
    _progress("2026-12-02 INFO loading 1/2 shards", lambda *a: seen.append(a))
    assert seen == [(139, 210, "compressing model"), (36, 36, "calibrating")]
