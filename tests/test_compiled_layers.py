"""train.compile=layers: llmbuild's launcher of LLaMA-Factory's training (adapters/llamafactory_compiled.py)
compiles each decoder layer, applies Liger's fused loss alone, and on several GPUs starts torchrun as
LLaMA-Factory's own launcher does. The training itself: tests/test_e2e_tiny.py (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmbuild.adapters import llamafactory_compiled, llamafactory_launch
from llmbuild.errors import ToolError
from llmbuild.facts.distributed import STRATEGIES

from tiny_model import build_tiny_llama


def test_one_process_unless_several_gpus_are_asked_for():
    assert llamafactory_compiled.torchrun_command(["llamafactory.yaml"], {}, 29500) is None
    assert llamafactory_compiled.torchrun_command(["llamafactory.yaml"], {"FORCE_TORCHRUN": "0"}, 29500) is None
    inside = {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2", "LOCAL_RANK": "1"}
    assert llamafactory_compiled.torchrun_command(["llamafactory.yaml"], inside, 29500) is None, \
        "a process torchrun started trains, it does not start torchrun again"


@pytest.mark.slow   # starts a process that imports torch
def test_several_gpus_start_torchrun_on_the_launcher_as_llamafactory_starts_it(tmp_path):
    """The same torchrun options as LLaMA-Factory's launcher builds from the same environment (run with
    subprocess.run caught), then this module instead of LLaMA-Factory's launcher script."""
    env = {**llamafactory_launch.run_env(STRATEGIES["ddp"], 2, environ={}),
           "NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29511"}
    code = ("import json, subprocess, sys\n"
            "from llamafactory import launcher\n"
            "def caught(command, env, check):\n"
            "    print(json.dumps({'command': command, 'alloc': env.get('PYTORCH_CUDA_ALLOC_CONF')}))\n"
            "    return subprocess.CompletedProcess(command, 0)\n"
            "subprocess.run = caught\n"
            "sys.argv = ['llamafactory-cli', 'train', 'llamafactory.yaml']\n"
            "launcher.launch()\n")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    theirs = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("{")))
    ours = llamafactory_compiled.torchrun_command(["--fused-loss", "llamafactory.yaml"], env, 1)
    assert theirs["command"][0] == "torchrun" and ours[:3] == [sys.executable, "-m", "torch.distributed.run"], \
        "torchrun of the Python whose versions the train key holds, not whichever is on PATH"
    assert ours[3:13] == theirs["command"][1:11]
    assert ours[13:] == ["-m", llamafactory_compiled.MODULE, "--fused-loss", "llamafactory.yaml"]
    assert llamafactory_compiled.torchrun_env(env)["PYTORCH_CUDA_ALLOC_CONF"] == theirs["alloc"]


@pytest.mark.slow   # starts a process that imports torch
def test_layers_are_found_through_fsdps_renamed_classes_and_a_disabled_dynamo_is_refused(tmp_path):
    """FSDP2 gives each sharded layer a subclass named FSDP<Class>: still a decoder layer. With TorchDynamo
    switched off by the environment nothing would compile under a compiled key: one line instead."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "m"))
    layer = model.model.layers[0]
    layer.__class__ = type(f"FSDP{type(layer).__name__}", (type(layer),), {})
    layers, _ = llamafactory_compiled.decoder_layers(model)
    assert len(layers) == 2 and layers[0] is layer
    code = ("from transformers import AutoModelForCausalLM\n"
            "from llmbuild.adapters.llamafactory_compiled import compile_layers\n"
            f"compile_layers(AutoModelForCausalLM.from_pretrained({str(tmp_path / 'm')!r}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "TORCHDYNAMO_DISABLE": "1"})
    assert "TorchDynamo is disabled in this environment" in result.stderr and result.returncode != 0


def test_a_launcher_failure_under_torchrun_is_reported_by_its_own_line():
    from llmbuild.adapters.process import last_error
    lines = ["ToolError: train.compile=layers: X names no decoder layer class", "Traceback (most recent call last):",
             "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:", "=====", "train.py FAILED"]
    assert last_error(lines) == lines[0]
    assert last_error(lines[2:]) == lines[2], "torchrun's line when it is the only one"


def test_the_program_names_this_module_and_the_fused_loss_flag():
    assert llamafactory_compiled.program(True, python="python") == [
        "python", "-m", "llmbuild.adapters.llamafactory_compiled", "--fused-loss"]
    assert llamafactory_compiled.program(False)[0] == sys.executable


@pytest.mark.slow   # starts a process that imports torch
def test_every_decoder_layer_of_a_lora_model_is_compiled_in_place(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "m"))
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    line = llamafactory_compiled.compile_layers(lora)
    assert line.startswith("llmbuild: 2 decoder layers (LlamaDecoderLayer) compiled")
    layers = lora.get_base_model().model.layers
    assert all(layer._compiled_call_impl is not None for layer in layers)
    assert lora.get_base_model().lm_head._compiled_call_impl is None, "the loss stays outside the compiled graphs"
    assert isinstance(layers[0].self_attn.q_proj.lora_A["default"], torch.nn.Linear), "LoRA's wrappers inside"


def test_a_model_without_decoder_layer_classes_is_one_line_naming_the_other_modes():
    import torch

    with pytest.raises(ToolError, match=r"train.compile=layers: Sequential names no decoder layer class .* "
                                         r"Use train.compile=model .* or train.compile=none"):
        llamafactory_compiled.compile_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.slow   # starts a process that imports torch
def test_the_fused_loss_replaces_the_models_forward_and_no_layer(tmp_path):
    """In a process of its own: Liger patches transformers' classes for the whole process."""
    folder = build_tiny_llama(tmp_path / "m")
    code = ("import sys\n"
            "from pathlib import Path\n"
            "import transformers.models.llama.modeling_llama as llama\n"
            "forward, norm, mlp = llama.LlamaForCausalLM.forward, llama.LlamaRMSNorm, llama.LlamaMLP\n"
            "from llmbuild.adapters.llamafactory_compiled import apply_fused_loss\n"
            "print(apply_fused_loss(Path(sys.argv[1])))\n"
            "print(llama.LlamaForCausalLM.forward is not forward, llama.LlamaRMSNorm is norm, llama.LlamaMLP is mlp)\n")
    result = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-2:] == [
        "llmbuild: Liger's fused linear cross-entropy for llama (its other kernels off)", "True True True"]


def test_a_model_type_liger_does_not_know_keeps_pytorchs_loss(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))
    assert "Liger has no fused linear cross-entropy for model type 'no-such-model'" in \
        llamafactory_compiled.apply_fused_loss(tmp_path)


def test_the_train_stage_runs_the_launcher_and_the_yaml_says_so():
    """train=gpu-bf16 (compile=layers, Liger): the train stage runs this module with --fused-loss, and the
    YAML's "Run by hand" line names the same command and variables; compile=none runs llamafactory-cli."""
    ddp = STRATEGIES["ddp"]

    def launch(method="sft", compile="layers", rounding="eager", bf16=True, liger=True):
        return llamafactory_launch.launch(ddp, 1, compile, rounding, bf16, liger, method, environ={})

    chosen = launch()
    assert chosen.program == llamafactory_compiled.program(True)
    assert chosen.hand == "CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_EMULATE_PRECISION_CASTS=1 python -m " \
        "llmbuild.adapters.llamafactory_compiled --fused-loss llamafactory.yaml", \
        "by hand as llmbuild runs it: inductor rounding as eager PyTorch does"
    assert chosen.env["TORCHINDUCTOR_EMULATE_PRECISION_CASTS"] == "1" and chosen.env["FORCE_TORCHRUN"] == "0"
    assert any("train.compile=layers: each decoder layer compiled" in line for line in chosen.notes)
    chosen = launch("dpo")
    assert chosen.program == llamafactory_compiled.program(False)
    assert any("Liger's fused loss does not apply to dpo (it needs the logits)" in line for line in chosen.notes)
    assert any("train.compile_rounding=eager: round to bf16 after every operation" in line for line in chosen.notes)
    chosen = launch(bf16=False)
    assert chosen.program == llamafactory_compiled.program(True)
    assert not any("compile_rounding" in line for line in chosen.notes), "fp32 training rounds nothing to bf16"
    chosen = launch(compile="none")
    assert (chosen.program, chosen.notes) == (None, ())
    assert chosen.hand == "CUDA_VISIBLE_DEVICES=0 llamafactory-cli train llamafactory.yaml"
    assert "TORCHINDUCTOR_EMULATE_PRECISION_CASTS" not in chosen.env
    chosen = launch(compile="model", liger=False, rounding="kernel")
    assert chosen.program is None and chosen.hand == \
        "CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_EMULATE_PRECISION_CASTS=0 llamafactory-cli train llamafactory.yaml"


@pytest.mark.slow   # starts a process that imports torch
@pytest.mark.parametrize("rounding, line", [("eager", "; they round to bf16 as eager PyTorch does"),
                                             ("kernel", "; they round to bf16 once per fused kernel")])
def test_the_training_process_rounds_as_train_compile_rounding_says(rounding, line):
    """The training process's environment under train.compile sets inductor's rounding, which the
    launcher's log line reports as the process sees it; no variable without compilation."""
    from llmbuild.facts.compile_modes import environment
    assert environment("none", rounding) == {}
    code = "from llmbuild.adapters.llamafactory_compiled import rounding; print(rounding())"
    for mode in ("layers", "model"):
        env = {**os.environ, **environment(mode, rounding)}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert result.stdout.strip() == line, result.stderr[-2000:]
