"""Training methods (train.stage) and pipelines: data of each kind checked row by row, LLaMA-Factory's
arguments for each method, pipeline stages as graph nodes with their own keys, preference metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmbuild.config.compose import compose
from llmbuild.dataset import kinds
from llmbuild.errors import ConfigError, DataError
from llmbuild.evaluation import preference
from llmbuild.facts.train_methods import CHAT, LABELLED, METHODS, PAIRS, TEXT
from llmbuild.plan.graph import build_plan
from llmbuild.plan.view import stage_config
from llmbuild.stages.train import arguments
from llmbuild.stages.train_samples import samples_of

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) if isinstance(rows, list) else rows, encoding="utf-8")
    return path


def read(path, fmt, kind, stage="dpo"):
    return list(kinds.read(path, fmt, kind, path.name, stage))


# --- data of each kind ---------------------------------------------------------------------------

PROMPT = [{"role": "user", "content": "Capital of France?"}]


@pytest.mark.parametrize("row, fmt", [
    ({"messages": PROMPT, "chosen": {"role": "assistant", "content": "Paris."},
      "rejected": {"role": "assistant", "content": "Lyon."}}, "openai"),
    ({"messages": PROMPT, "chosen": "Paris.", "rejected": "Lyon."}, "openai"),
    ({"prompt": PROMPT, "chosen": [{"role": "assistant", "content": "Paris."}],          # TRL's conversational form
      "rejected": [{"role": "assistant", "content": "Lyon."}]}, "openai"),
    ({"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}, "openai"),  # TRL's standard form
    ({"conversations": [{"from": "human", "value": "Capital of France?"}],
      "chosen": {"from": "gpt", "value": "Paris."}, "rejected": {"from": "gpt", "value": "Lyon."}}, "sharegpt"),
    ({"instruction": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}, "alpaca"),
])
def test_preference_pairs_in_every_format_read_as_one_form(tmp_path, row, fmt):
    (pair,) = read(write(tmp_path / "p.jsonl", [row]), fmt, PAIRS)
    assert pair == {"messages": PROMPT, "tools": [], "chosen": {"role": "assistant", "content": "Paris."},
                    "rejected": {"role": "assistant", "content": "Lyon."}}


@pytest.mark.parametrize("row, fmt, message", [
    ({"messages": PROMPT + [{"role": "assistant", "content": "Paris."}]}, "openai",
     r"p.jsonl:2: train.stage=dpo learns from a prompt and two answers, 'chosen' and 'rejected'.*no 'chosen' and "
     r"no 'rejected' \(it looks like a chat row: train it with train.stage=sft\)"),
    ({"messages": PROMPT, "chosen": "Paris."}, "openai", r"p.jsonl:2: .*no 'rejected'"),
    ({"messages": PROMPT, "chosen": "Paris.", "rejected": "Paris."}, "openai", r"p.jsonl:2: .*the same answer"),
    ({"messages": PROMPT, "chosen": "", "rejected": "Lyon."}, "openai", r"p.jsonl:2: .*empty"),
    ({"messages": PROMPT, "chosen": {"role": "user", "content": "x"}, "rejected": "Lyon."}, "openai",
     r"p.jsonl:2: 'chosen' must be a string or"),
    ({"messages": PROMPT + [{"role": "assistant", "content": "Hi"}], "chosen": "a", "rejected": "b"}, "openai",
     r"p.jsonl:2: .*alternate"),
    ({"instruction": "Q", "chosen": ["a"], "rejected": "b"}, "alpaca",
     r"p.jsonl:2: 'chosen' must be the answer's text"),
])
def test_bad_preference_rows_name_the_line_and_the_fields(tmp_path, row, fmt, message):
    good = {"messages": PROMPT, "chosen": "Paris.", "rejected": "Lyon."}
    if fmt != "openai":
        good = {"instruction": "Q", "chosen": "a", "rejected": "b"}
    with pytest.raises(DataError, match=message):
        read(write(tmp_path / "p.jsonl", [good, row]), fmt, PAIRS)


def test_labelled_rows_need_a_boolean_label(tmp_path):
    rows = [{"messages": PROMPT + [{"role": "assistant", "content": "Paris."}], "label": True},
            {"messages": PROMPT + [{"role": "assistant", "content": "Lyon."}], "kto_tag": False}]
    assert [r["label"] for r in read(write(tmp_path / "k.jsonl", rows), "openai", LABELLED, "kto")] == [True, False]
    with pytest.raises(DataError, match=r"k.jsonl:1: train.stage=kto learns from .*boolean 'label'.*no 'label'"):
        read(write(tmp_path / "k.jsonl", [{"messages": rows[0]["messages"]}]), "openai", LABELLED, "kto")
    with pytest.raises(DataError, match=r"k.jsonl:1: 'label' must be true .* got 'yes'"):
        read(write(tmp_path / "k.jsonl", [{**rows[0], "label": "yes"}]), "openai", LABELLED, "kto")


def test_preference_data_given_to_sft_says_which_stage_it_is_for(tmp_path):
    rows = [{"messages": PROMPT, "chosen": "Paris.", "rejected": "Lyon."}]
    with pytest.raises(DataError, match=r"p.jsonl:1: .*'chosen', 'rejected'.*train.stage=sft.*train.stage=dpo"):
        read(write(tmp_path / "p.jsonl", rows), "openai", CHAT, "sft")


def test_text_files_split_into_documents(tmp_path):
    assert read(write(tmp_path / "a.txt", "one\ntwo\n\nthree\n"), "text", TEXT, "pt") == [
        {"text": "one\ntwo"}, {"text": "three"}]   # blank lines separate documents
    assert read(write(tmp_path / "b.txt", "one\ntwo\n"), "text", TEXT, "pt") == [{"text": "one"}, {"text": "two"}]
    assert read(write(tmp_path / "c.jsonl", [{"text": "doc"}, {"text": "  "}]), "text", TEXT, "pt") == [{"text": "doc"}]
    with pytest.raises(DataError, match=r"d.jsonl:1: text rows are objects with a 'text' string"):
        read(write(tmp_path / "d.jsonl", [{"messages": PROMPT}]), "text", TEXT, "pt")


# --- validation before anything runs -------------------------------------------------------------

@pytest.mark.parametrize("overrides, message", [
    (["train.stage=foo"], r"'train.stage' = 'foo'.*not a valid choice.*Valid: sft, pt, dpo, orpo, simpo, kto"),
    (["train.stage=pt"], r"'dataset.format' = 'openai'.*train.stage=pt \(continued pretraining on raw text\) learns "
                         r"from raw text.*Use dataset.format=text"),
    (["train.stage=dpo", "dataset.format=text"], r"'dataset.format' = 'text'.*train.stage=dpo"),
    (["train.stage=orpo", "train.pref_loss=ipo"], r"'train.pref_loss' = 'ipo'.*a loss of train.stage=dpo"),
    (["train.stage=dpo", "train.pref_loss=bogus"], r"'train.pref_loss' = 'bogus'.*Valid: sigmoid, hinge, ipo"),
    (["train.stage=dpo", "train.pref_beta=0"], r"'train.pref_beta' = 0.*must be positive"),
    (["recipe=demo-dpo", "pipeline.sft.train.stage=pt"], r"'pipeline.sft.dataset.format' = 'openai'.*train.stage=pt"),
    (["recipe=demo-dpo", "pipeline.sft.lora.r=0"], r"'pipeline.sft.lora.r' = 0"),
    (["recipe=demo-dpo", "+pipeline.sft.train.bogus=1"], r"pipeline.sft.train.bogus"),
    (["recipe=demo-dpo", "pipeline.sfx.train.learning_rate=1e-4"],
     r"^config key 'pipeline.sfx' in the command-line override .*: the pipeline has no stage 'sfx'\. Did you mean "
     r"'pipeline.sft'\? Its stages: pipeline.sft\.$"),
    (["recipe=demo-dpo", "pipeline.sft.train.learnin_rate=1e-4"],
     r"'pipeline.sft.train.learnin_rate'.*Did you mean 'pipeline.sft.train.learning_rate'\?"),
    (["pipeline.sft.lora.r=4"], r"'pipeline.sft'.*This recipe has no pipeline"),
    (["recipe=demo-dpo", "train.stage=sft", "dataset=demo-identity"], r"a stage of the pipeline has this name too"),
])
def test_bad_training_settings_are_one_message_naming_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(ROOT, [f"store={tmp_path}", *overrides])


# --- LLaMA-Factory's arguments -------------------------------------------------------------------

def train_args(*overrides):
    plan = build_plan(compose(ROOT, list(overrides)), ROOT, strict=False)
    return arguments(stage_config(plan, "train"), base="b", dataset_dir="d", output_dir="o")


def test_each_method_becomes_llamafactorys_stage_and_loss():
    assert train_args()["stage"] == "sft" and "pref_beta" not in train_args()
    dpo = train_args("recipe=demo-dpo", "train.pref_beta=0.2")
    assert (dpo["stage"], dpo["pref_loss"], dpo["pref_beta"], dpo["dpo_label_smoothing"]) == ("dpo", "sigmoid", 0.2, 0)
    assert train_args("recipe=demo-dpo", "train.pref_loss=ipo")["pref_loss"] == "ipo"
    orpo = train_args("recipe=demo-dpo", "train.stage=orpo")
    assert (orpo["stage"], orpo["pref_loss"]) == ("dpo", "orpo")
    simpo = train_args("recipe=demo-dpo", "train.stage=simpo", "train.simpo_gamma=1.0")
    assert (simpo["stage"], simpo["pref_loss"], simpo["simpo_gamma"]) == ("dpo", "simpo", 1.0)
    kto = train_args("recipe=demo-dpo", "train.stage=kto", "train.kto_rejected_weight=2.0")
    assert (kto["stage"], kto["kto_rejected_weight"]) == ("kto", 2.0) and "pref_loss" not in kto
    pt = train_args("recipe=demo-pt")
    assert pt["stage"] == "pt" and "packing" not in pt   # LLaMA-Factory packs pt by default
    assert train_args("recipe=demo-pt", "train.packing=false")["packing"] is False
    assert set(METHODS) == {"sft", "pt", "dpo", "orpo", "simpo", "kto"}


def test_samples_of_each_kind_are_written_by_the_template():
    def render(messages, tools, add_generation_prompt):
        text = "".join(f"<{m['role']}>{m['content']}</s>" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")

    pair = {"messages": PROMPT, "tools": [], "chosen": {"role": "assistant", "content": "Paris."},
            "rejected": {"role": "assistant", "content": "Lyon."}}
    samples, entry = samples_of(PAIRS, [pair], render, ["</s>"], "t")
    assert samples == [{"conversations": [{"from": "human", "value": "<user>Capital of France?</s><assistant>"}],
                        "chosen": {"from": "gpt", "value": "Paris.</s>"},
                        "rejected": {"from": "gpt", "value": "Lyon.</s>"}}]
    assert entry["ranking"] is True and entry["columns"] == {"messages": "conversations", "chosen": "chosen",
                                                              "rejected": "rejected"}
    labelled = {"messages": [*PROMPT, {"role": "assistant", "content": "Lyon."}], "tools": [], "label": False}
    samples, entry = samples_of(LABELLED, [labelled], render, ["</s>"], "t")
    assert samples[0]["label"] is False and entry["columns"]["kto_tag"] == "label"
    assert samples[0]["conversations"][-1] == {"from": "gpt", "value": "Lyon.</s>"}
    samples, entry = samples_of(TEXT, [{"text": "doc"}], render, ["</s>"], "t")
    assert samples == [{"text": "doc"}] and entry["columns"] == {"prompt": "text"} and entry["formatting"] == "alpaca"


# --- pipelines: stages as nodes with their own keys ----------------------------------------------

def keys(*overrides, tmp):
    plan = build_plan(compose(ROOT, [f"store={tmp}", "recipe=demo-dpo", *overrides]), ROOT, strict=False)
    return {slot: node.key for slot, node in plan.nodes.items()}, plan


def test_a_pipeline_stage_is_its_own_data_train_and_merge(tmp_path):
    found, plan = keys(tmp=tmp_path)
    assert list(found)[:7] == ["base", "data@sft", "train@sft", "merge@sft", "data", "train", "merge"]
    assert plan.nodes["train"].inputs == {"base": "merge@sft", "data": "data", "origin": "base"}
    assert plan.nodes["train@sft"].inputs == {"base": "base", "data": "data@sft"}
    assert "merge@sft" in plan.nodes["eval"].inputs   # the SFT model is evaluated: DPO's reference
    assert stage_config(plan, "train@sft").train.stage == "sft"
    assert stage_config(plan, "data@sft").dataset.name == "demo_identity"
    # the SFT stage is the identity demo's own training: the two recipes share it
    demo = build_plan(compose(ROOT, [f"store={tmp_path}"]), ROOT, strict=False)
    assert (found["data@sft"], found["train@sft"], found["merge@sft"]) == (
        demo.nodes["data"].key, demo.nodes["train"].key, demo.nodes["merge"].key)


LAST_AND_AFTER = {"data", "train", "merge", "convert", "parity", "imatrix", "quantize", "quantize@q8_0", "ollama",
                  "smoke", "eval", "report"}


@pytest.mark.parametrize("override, expected", [
    ("train.pref_beta=0.2", LAST_AND_AFTER - {"data"}),   # the last stage and what follows, never SFT
    ("pipeline.sft.train.learning_rate=2e-4", LAST_AND_AFTER - {"data"} | {"train@sft", "merge@sft"}),
    ("pipeline.sft.dataset.max_samples=20", LAST_AND_AFTER - {"data"} | {"data@sft", "train@sft", "merge@sft"}),
    ("dataset.max_samples=20", LAST_AND_AFTER),
    ("quant=q5_k_m", {"quantize", "ollama", "smoke", "eval", "report"}),
])
def test_a_change_to_one_stage_rebuilds_that_stage_and_what_follows(tmp_path, override, expected):
    before, _ = keys(tmp=tmp_path)
    after, _ = keys(override, tmp=tmp_path)
    assert {slot for slot in before if before[slot] != after.get(slot)} == expected


def test_continued_pretraining_alone_has_no_chat_smoke_test(tmp_path):
    plan = build_plan(compose(ROOT, [f"store={tmp_path}", "recipe=demo-pt"]), ROOT, strict=False)
    assert "smoke" not in plan.nodes and "report" in plan.nodes and "smoke" not in plan.nodes["report"].inputs


# --- preference metrics --------------------------------------------------------------------------

def test_preference_metrics_compare_chosen_with_rejected_and_the_reference():
    # two pairs, 4 tokens per answer: the chosen answers (first two cases), then the rejected ones
    reference = [-10.0, -10.0, -8.0, -8.0]   # the reference prefers both rejected answers
    tuned = [-6.0, -9.0, -9.0, -8.0]         # tuned: the first pair flipped, both chosen answers raised
    found = preference.pairs(tuned, [4, 4, 4, 4], reference, beta=0.1)
    assert found["pairs"] == 2 and found["prefers_chosen"] == 0.5
    assert found["margin"] == pytest.approx(((-6 + 9) + (-9 + 8)) / 2)
    # rewards 0.1 * (tuned - reference): chosen 0.4, 0.1; rejected -0.1, 0.0
    assert found["reward_accuracy"] == 1.0 and found["reward_margin"] == pytest.approx((0.5 + 0.1) / 2)
    itself = preference.pairs(reference, [4, 4, 4, 4], None, 0.1)
    assert itself["prefers_chosen"] == 0.0 and itself["reward_accuracy"] is None
    # per token, not summed: a long chosen answer is not preferred less for its length
    assert preference.pairs([-8.0, -4.0], [8, 2], None, 0.1)["prefers_chosen"] == 1.0


def test_kto_reward_accuracy_follows_the_labels():
    found = preference.labelled([-5.0, -20.0], [True, False], [-10.0, -10.0], beta=0.1)
    assert found["reward_accuracy"] == 1.0 and found["reward_margin"] == pytest.approx(0.5 + 1.0)


def test_doit_diff_names_the_pipeline_stage_a_change_rebuilds(tmp_path):
    from llmbuild.review.diff import diff_document

    _, before = keys(tmp=tmp_path)
    _, after = keys("pipeline.sft.lora.r=16", tmp=tmp_path)
    document = diff_document(before, after, ("a", "b"))
    assert document["rebuild"][:4] == ["train@sft", "merge@sft", "train", "merge"]
    assert {"base", "data@sft", "data"} <= set(document["unchanged"])
    assert {c["key"] for c in document["changes"]} == {"pipeline.sft.lora.r", "pipeline.sft.lora.alpha"}
