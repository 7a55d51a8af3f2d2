"""Training on several GPUs of one host (train.devices, train.distributed), without a GPU: the
launcher's environment as LLaMA-Factory's own launcher reads it, the DeepSpeed and FSDP configs
as transformers reads them, the YAML that names them, the keys, the messages and `doit size`.
No multi-GPU run is here: none of these needs one, and no machine with several GPUs was at hand."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from llmbuild.adapters import llamafactory, llamafactory_launch
from llmbuild.cli.cmd_size import size_text
from llmbuild.cli.tasks import stage_context
from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError, StageError, ToolError
from llmbuild.facts import layout
from llmbuild.facts.distributed import NO_MULTICAST, STRATEGIES
from llmbuild.files import devices as device_files
from llmbuild.plan.graph import build_plan
from llmbuild.plan.stages import ORDER
from llmbuild.plan.view import stage_config
from llmbuild.sizing.choice import TrainChoice
from llmbuild.sizing.params import ModelShape, lora_modules, lora_parameters
from llmbuild.sizing.remedies import remedies
from llmbuild.sizing.report import overrides
from llmbuild.sizing.train_memory import GIB, TrainSetup, gathered_bytes, train_memory, weight_bytes
from llmbuild.stages import preflight, train

ROOT = Path(__file__).resolve().parent.parent
DOWNSTREAM_OF_TRAIN = {"train", "merge", "convert", "parity", "imatrix", "quantize", "ollama", "smoke", "eval",
                       "report"}
QWEN25_7B = ModelShape(3584, 18944, 28, 28, 4, 152064, False, model_type="qwen2")


def changed(plan_a, plan_b) -> set[str]:
    """The stages (not the eval ladder's extra quants) whose nodes differ."""
    stages = set(plan_a.nodes) | set(plan_b.nodes)
    return {s for s in ORDER if s in stages and plan_a.nodes.get(s) != plan_b.nodes.get(s)}


def fake_gpus(monkeypatch, count: int) -> None:
    """This machine shows `count` GPUs (planning and the train stage count them the same way)."""
    monkeypatch.setattr(device_files, "visible_gpus", lambda environ=None, dev=None: count)
    monkeypatch.setattr(preflight, "visible_gpus", lambda environ=None, dev=None: count)
    monkeypatch.setattr(llamafactory_launch, "visible_gpus", lambda environ=None, dev=None: count)


# -- counting GPUs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("listed, expected", [
    (None, 2), ("1", 1), ("", 0), ("0,1,2,3", 2), ("0,-1,1", 1), ("GPU-3f1c,GPU-77aa", 2)])
def test_gpus_are_the_device_files_narrowed_by_cuda_visible_devices(tmp_path, listed, expected):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-modeset"):
        (tmp_path / name).touch()
    environ = {} if listed is None else {"CUDA_VISIBLE_DEVICES": listed}
    assert device_files.visible_gpus(environ, tmp_path) == expected
    assert device_files.devices_in_force("auto", environ, tmp_path) == max(expected, 1)
    assert device_files.devices_in_force(3, environ, tmp_path) == 3


# -- the launcher ----------------------------------------------------------------------------------

def test_several_devices_launch_torchrun_through_llamafactory_with_multicast_off():
    env = llamafactory_launch.run_env(STRATEGIES["ddp"], 2, environ={})
    assert env == {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2", **NO_MULTICAST}
    fsdp = llamafactory_launch.run_env(STRATEGIES["fsdp"], 4, environ={})
    assert fsdp["NPROC_PER_NODE"] == "4" and fsdp["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"


def test_a_multicast_setting_the_user_made_stays_theirs(monkeypatch, tmp_path):
    env = llamafactory_launch.run_env(STRATEGIES["ddp"], 2, environ={"NCCL_NVLS_ENABLE": "1"})
    assert "NCCL_NVLS_ENABLE" not in env and env["NVSHMEM_DISABLE_NVLS"] == "1"
    seen = {}
    monkeypatch.setattr(llamafactory, "run_logged", lambda argv, log, **kw: seen.update(kw["env"]))
    monkeypatch.setattr(llamafactory, "cli", lambda: "llamafactory-cli")
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "1")
    llamafactory.run("export", tmp_path, offline=True)   # the merge too: every llamafactory-cli run
    assert "NCCL_NVLS_ENABLE" not in seen and seen["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"


def test_one_device_keeps_to_one_gpu_on_a_host_with_several(monkeypatch):
    fake_gpus(monkeypatch, 4)
    env = llamafactory_launch.run_env(STRATEGIES["deepspeed-zero3"], 1, environ={"CUDA_VISIBLE_DEVICES": "2,3,5,7"})
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and env["FORCE_TORCHRUN"] == "0" and "NPROC_PER_NODE" not in env
    fake_gpus(monkeypatch, 1)
    assert "CUDA_VISIBLE_DEVICES" not in llamafactory_launch.run_env(STRATEGIES["ddp"], 1, environ={})


@pytest.mark.slow   # starts a process that imports torch
def test_llamafactorys_launcher_reads_the_environment_as_llmbuild_writes_it(tmp_path):
    """LLaMA-Factory's own launcher (llamafactory/launcher.py), run with subprocess.run caught: the
    torchrun command it builds from llmbuild's variables and the multi-host ones passed through."""
    env = {**os.environ, **llamafactory_launch.run_env(STRATEGIES["ddp"], 2, environ={}),
           "NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29511"}
    code = (
        "import json, subprocess, sys\n"
        "from llamafactory import launcher\n"
        "def caught(command, env, check):\n"
        "    print(json.dumps({'command': command, 'nvls': env.get('NCCL_NVLS_ENABLE')}))\n"
        "    return subprocess.CompletedProcess(command, 0)\n"
        "subprocess.run = caught\n"
        "sys.argv = ['llamafactory-cli', 'train', 'llamafactory.yaml']\n"
        "launcher.launch()\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("{"))
    seen = json.loads(line)
    command = seen["command"]
    assert command[:11] == ["torchrun", "--nnodes", "2", "--node_rank", "1", "--nproc_per_node", "2",
                            "--master_addr", "10.0.0.7", "--master_port", "29511"]
    assert command[-1] == layout.LLAMAFACTORY_YAML and seen["nvls"] == "0"


# -- the configs the artifact holds ------------------------------------------------------------------

@pytest.mark.parametrize("name, stage", [("deepspeed-zero2", 2), ("deepspeed-zero3", 3)])
def test_deepspeed_configs_are_json_with_their_zero_stage(tmp_path, name, stage):
    from accelerate.utils.deepspeed import HfDeepSpeedConfig  # what the HF Trainer reads them with

    path = llamafactory_launch.write_config(STRATEGIES[name], 2, tmp_path)
    body = json.loads(path.read_text())
    assert path.name == STRATEGIES[name].config_file and body["zero_optimization"]["stage"] == stage
    assert body["bf16"]["enabled"] == body["fp16"]["enabled"] == "auto"   # from train.bf16 / train.fp16
    assert body["train_micro_batch_size_per_gpu"] == body["gradient_accumulation_steps"] == "auto"
    read = HfDeepSpeedConfig(str(path))
    assert read.get_value("zero_optimization.stage") == stage and read.is_zero3() == (stage == 3)
    assert not read.is_offload()
    if stage == 3:   # the adapter saved as one file
        assert body["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True


def test_the_fsdp_config_is_read_by_transformers_as_fsdp2_full_shard(tmp_path, monkeypatch):
    from transformers import TrainingArguments

    llamafactory_launch.write_config(STRATEGIES["fsdp"], 2, tmp_path)
    monkeypatch.chdir(tmp_path)   # named relatively, as in the YAML
    args = TrainingArguments(output_dir=str(tmp_path / "o"), fsdp=llamafactory_launch.FSDP_OPTIONS,
                             fsdp_config=STRATEGIES["fsdp"].config_file)
    assert [str(o.value) for o in args.fsdp] == ["full_shard", "auto_wrap"]
    assert args.fsdp_plugin_args["fsdp_version"] == 2 and args.fsdp_plugin_args["reshard_after_forward"] is True
    assert args.fsdp_plugin_args["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"   # one unit per decoder layer


def test_one_device_writes_no_config_and_no_yaml_line(tmp_path):
    for strategy in STRATEGIES.values():
        assert llamafactory_launch.write_config(strategy, 1, tmp_path) is None
        assert llamafactory_launch.yaml_args(strategy, 1) == {}
    assert list(tmp_path.iterdir()) == []


def _train_view(tmp_path, *overrides):
    plan = build_plan(compose(ROOT, [f"store={tmp_path}/store", *overrides]), ROOT, strict=False)
    return plan, stage_config(plan, "train")


@pytest.mark.parametrize("strategy, lines, compiled", [
    ("ddp", {}, "none"),
    ("deepspeed-zero2", {"deepspeed": "ds_zero2.json"}, "none"),
    ("deepspeed-zero3", {"deepspeed": "ds_zero3.json"}, "none"),
    ("fsdp", {"fsdp": "full_shard auto_wrap", "fsdp_config": "fsdp_config.json"}, "none"),
    ("ddp", {}, "layers"),
])
def test_the_train_stage_writes_the_config_its_yaml_names_and_launches_as_its_header_says(
        tmp_path, monkeypatch, strategy, lines, compiled):
    """train.run on a fake LLaMA-Factory: the artifact holds the YAML, the config it names
    (relatively, beside it) and a run-by-hand line with the launcher's variables; the launcher gets
    those variables. With train.compile=layers llmbuild's launcher runs the YAML, by hand too."""
    fake_gpus(monkeypatch, 2)
    plan, _ = _train_view(tmp_path, "train.devices=2", f"train.distributed={strategy}", f"train.compile={compiled}")
    out = tmp_path / "out"
    out.mkdir()
    ctx = replace(stage_context(plan, "train", out), inputs={"base": tmp_path / "base", "data": tmp_path},
                  terminal=open(os.devnull, "w"))
    monkeypatch.setattr(preflight, "check_before_training", lambda cfg, base: None)
    monkeypatch.setattr(train, "write_samples", lambda *a: (type("S", (), {"family": "chatml", "source": "x"}), 3, []))
    monkeypatch.setattr(train, "sample_lengths", lambda base, samples: [])
    # no samples to measure, no auto batch
    monkeypatch.setattr(train, "train_choice", lambda cfg, config, lengths: TrainChoice({}, {}, ()))
    launched = {}

    def fake_run(command, folder, offline, credentials=None, verbose=False, on_line=None, launch=None,
                 program=None, overrides=()):
        launched.update(launch, program=program)
        (folder / layout.ADAPTER).mkdir(exist_ok=True)   # a link to the key's resume folder
        (folder / layout.ADAPTER / "adapter_model.safetensors").write_bytes(b"")

    monkeypatch.setattr(llamafactory, "run", fake_run)
    train.run(ctx)
    written = out / layout.LLAMAFACTORY_YAML
    args = yaml.safe_load(written.read_text())
    for key, value in lines.items():
        assert args[key] == value
    named = [args[k] for k in ("deepspeed", "fsdp_config") if k in args]
    assert all((written.parent / name).is_file() for name in named)
    assert sorted(p.name for p in out.glob("*.json")) == sorted(named)
    header = written.read_text().splitlines()[0]
    assert "FORCE_TORCHRUN=1 NPROC_PER_NODE=2" in header and "NCCL_NVLS_ENABLE=0" in header
    assert "NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT" in header
    assert launched["FORCE_TORCHRUN"] == "1" and launched["NPROC_PER_NODE"] == "2"
    assert all(f"{k}={v}" in header for k, v in llamafactory_launch.launch_env(STRATEGIES[strategy], 2).items())
    if compiled == "layers":
        assert re.search(r"TORCHINDUCTOR_EMULATE_PRECISION_CASTS=1 python -m llmbuild.adapters.llamafactory_compiled "
                         r"llamafactory.yaml output_dir=\$HOME/llmbuild-by-hand/\S+ \(several hosts", header), header
        assert launched["TORCHINDUCTOR_EMULATE_PRECISION_CASTS"] == "1"
        assert launched["program"][1:] == ["-m", "llmbuild.adapters.llamafactory_compiled"]
    else:
        assert " llamafactory-cli train llamafactory.yaml" in header and launched["program"] is None


def test_preview_arguments_carry_the_strategy_line(tmp_path, monkeypatch):
    fake_gpus(monkeypatch, 4)
    _, view = _train_view(tmp_path, "train.devices=auto", "train.distributed=deepspeed-zero3")
    assert view.train_devices == 4
    assert train.arguments(view, base="b", dataset_dir="d", output_dir="a")["deepspeed"] == "ds_zero3.json"
    _, single = _train_view(tmp_path, "train.distributed=deepspeed-zero3")
    assert "deepspeed" not in train.arguments(single, base="b", dataset_dir="d", output_dir="a")


# -- checks before training ------------------------------------------------------------------------

def test_deepspeed_missing_is_one_line_saying_how_to_install_it(tmp_path, monkeypatch):
    fake_gpus(monkeypatch, 2)
    monkeypatch.setattr(llamafactory_launch, "installed", lambda module: False)
    _, view = _train_view(tmp_path, "train.devices=2", "train.distributed=deepspeed-zero2")
    with pytest.raises(ToolError) as caught:
        preflight.check_devices(view)
    message = str(caught.value)
    assert "\n" not in message and "train.distributed=deepspeed-zero2 needs DeepSpeed" in message
    assert "pip install deepspeed" in message
    _, fsdp = _train_view(tmp_path, "train.devices=2", "train.distributed=fsdp")
    preflight.check_devices(fsdp)   # FSDP is torch's own


def test_more_devices_than_the_machine_shows_stop_before_training(tmp_path, monkeypatch):
    fake_gpus(monkeypatch, 1)
    _, view = _train_view(tmp_path, "train.devices=4")
    with pytest.raises(StageError, match=r"train\.devices=4 asks for 4 GPUs, and this machine shows 1 .*"
                                         r"Use train\.devices=1"):
        preflight.check_devices(view)
    fake_gpus(monkeypatch, 8)
    _, planned = _train_view(tmp_path, "train.devices=auto")
    fake_gpus(monkeypatch, 2)
    with pytest.raises(StageError, match=r"train\.devices=auto counted 8 GPUs when the build was planned"):
        preflight.check_devices(planned)


# -- keys ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override", ["train.devices=2", "train.distributed=fsdp",
                                      "train.devices=2 train.distributed=deepspeed-zero3"])
def test_devices_and_strategy_are_in_the_train_key(plan_for, override):
    assert changed(plan_for(), plan_for(*override.split())) == DOWNSTREAM_OF_TRAIN


def test_multi_host_settings_are_in_no_key(plan_for, monkeypatch):
    before = plan_for("train.devices=2")
    for name, value in (("NNODES", "4"), ("NODE_RANK", "3"), ("MASTER_ADDR", "10.1.2.3"), ("MASTER_PORT", "29400")):
        monkeypatch.setenv(name, value)
    assert changed(before, plan_for("train.devices=2")) == set()


def test_auto_is_counted_when_planned_and_the_count_is_in_the_key(plan_for, monkeypatch):
    fake_gpus(monkeypatch, 2)
    two = plan_for("train.devices=auto")
    assert two.nodes["train"].payload["config"]["train_devices"] == 2   # what the manifest records
    assert changed(two, plan_for("train.devices=auto")) == set()
    fake_gpus(monkeypatch, 4)
    assert changed(two, plan_for("train.devices=auto")) == DOWNSTREAM_OF_TRAIN
    fake_gpus(monkeypatch, 0)   # no GPU: the CPU, one process, as train.devices=1
    assert plan_for("train.devices=auto").nodes["train"].payload["config"]["train_devices"] == 1


def test_deepspeeds_version_is_in_the_key_only_when_deepspeed_trains(plan_for, monkeypatch):
    from llmbuild.plan import keys

    before, zero3 = plan_for("train.devices=2"), plan_for("train.devices=2", "train.distributed=deepspeed-zero3")
    real = keys.tool_version
    monkeypatch.setattr(keys, "tool_version", lambda d: "9.9" if d == "deepspeed" else real(d))
    assert changed(before, plan_for("train.devices=2")) == set()
    assert changed(zero3, plan_for("train.devices=2", "train.distributed=deepspeed-zero3")) == DOWNSTREAM_OF_TRAIN


# -- validation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["train.devices=0"], r"^config key 'train\.devices' = 0 in .*: must be at least 1\. Use 1"),
    (["train.devices=two"], r"^config key 'train\.devices' = 'two' in .*: not a number of GPUs\. Use a whole number"),
    (["train.devices=1.5"], r"'train\.devices' = 1\.5 .*not a number of GPUs"),
    (["train.devices=true"], r"'train\.devices' = True .*not a number of GPUs"),
    (["train.distributed=zero3"], r"^config key 'train\.distributed' = 'zero3' .*not a valid choice\. "
                                  r"Valid: ddp, deepspeed-zero2, deepspeed-zero3, fsdp\.$"),
    (["train.devices=2", "train.distributed=fsdp", "lora.quantization_bit=8"],
     r"'lora\.quantization_bit' = 8 .*only in 4 bits\. Use lora\.quantization_bit=4, or train\.distributed=ddp"),
])
def test_bad_settings_get_one_line_with_the_rule_and_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message) as caught:
        compose(ROOT, overrides)
    assert "\n" not in str(caught.value)


def test_a_pipeline_stage_has_its_own_devices(tmp_path):
    with pytest.raises(ConfigError, match=r"'pipeline\.sft\.train\.devices' = -2"):
        compose(ROOT, ["recipe=demo-dpo", "pipeline.sft.train.devices=-2"])


# -- doit size -------------------------------------------------------------------------------------

def _memory(devices: int, strategy: str, shape=QWEN25_7B, **setup):
    modules = lora_modules(["all"])
    trainable = lora_parameters(shape, modules, 8)
    return trainable, train_memory(shape, modules, trainable, TrainSetup(
        batch_size=1, cutoff_len=1024, gradient_checkpointing=True, devices=devices, strategy=strategy, **setup))


def test_per_gpu_memory_of_each_strategy():
    trainable, one = _memory(1, "ddp")
    _, ddp = _memory(2, "ddp")
    _, zero2 = _memory(2, "deepspeed-zero2")
    _, zero3 = _memory(2, "deepspeed-zero3")
    _, fsdp = _memory(2, "fsdp")
    base = weight_bytes(QWEN25_7B, None)
    # DDP replicates (and buckets a copy of the gradients); ZeRO-2 splits gradients and Adam's states
    assert ddp.weights == zero2.weights == one.weights == base
    assert ddp.trainable_state == one.trainable_state + 4 * trainable
    assert zero2.trainable_state == round(4 * trainable + 12 * trainable / 2)
    # ZeRO-3 splits the 16-bit base too, and holds the gathered blocks (here: embeddings + lm_head)
    assert gathered_bytes(QWEN25_7B) == 2 * 2 * 152064 * 3584
    assert zero3.weights == round(base / 2) + gathered_bytes(QWEN25_7B)
    assert zero3.trainable_state == round(16 * trainable / 2)
    # FSDP's shards are fp32 under mixed precision
    assert fsdp.weights == base + gathered_bytes(QWEN25_7B)
    assert ddp.activations == zero3.activations == one.activations   # each GPU's own batch
    assert zero3.total < zero2.total < ddp.total


def test_a_7b_lora_that_fits_only_sharded_gets_zero3_as_a_remedy():
    _, ddp = _memory(4, "ddp")
    _, zero3 = _memory(4, "deepspeed-zero3")
    budget = 12 * GIB
    assert ddp.total > budget > zero3.total
    modules = lora_modules(["all"])
    trainable = lora_parameters(QWEN25_7B, modules, 8)
    setup = TrainSetup(batch_size=1, cutoff_len=1024, gradient_checkpointing=True, devices=4, strategy="ddp")
    found = {overrides(r): r for r in remedies(QWEN25_7B, modules, trainable, setup, budget)}
    assert found["train.distributed=deepspeed-zero3"].memory.total == zero3.total


def test_doit_size_shows_the_per_gpu_table_and_the_global_batch(tmp_path, monkeypatch):
    args = [f"store={tmp_path}", "model=qwen2.5-7b-instruct", "train.bf16=true", "train.devices=2",
            "train.distributed=deepspeed-zero3", "train.per_device_train_batch_size=2",
            "train.gradient_accumulation_steps=4"]
    plan = build_plan(compose(ROOT, args), ROOT, strict=False)
    text = size_text(plan)
    assert "each of 2 GPUs with deepspeed-zero3" in text
    rows = {line.split()[0]: line for line in text.splitlines()
            if line.startswith("    ") and "trainable state" in line}
    assert set(rows) == set(STRATEGIES) and rows["deepspeed-zero3"].split()[2] == "*"
    assert float(rows["deepspeed-zero3"].split()[1]) < float(rows["ddp"].split()[1])
    assert "global batch 2 x 4 accumulation x 2 GPUs = 16" in text
    single = size_text(build_plan(compose(ROOT, args[:3]), ROOT, strict=False))
    assert "per GPU on" not in single and "each of" not in single
