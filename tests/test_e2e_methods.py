"""End to end on a tiny random model: continued pretraining, DPO after SFT as a two-stage pipeline,
KTO, and the tasks a one-key change in one stage would run (`doit plan` on the built store). The
demo recipes' own data is used (small), with few steps, so each build takes a minute or two on 2 cores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from doit_cli import ROOT, Done, doit

pytestmark = pytest.mark.slow


def build(tiny_llama: Path, store: Path, *extra: str, ok: bool = True, command: str = "build") -> Done:
    return doit(command, *extra, "model=local", f"model.path={tiny_llama}", "model.name=Tiny-Llama",
                "train.logging_steps=1", "eval.max_rows=4", "eval.max_new_tokens=8", "smoke.max_tokens=8",
                "eval.quants=[]", store=store, ok=ok)


def plan(tiny_llama: Path, store: Path, *extra: str) -> str:
    """`doit plan` of the build above: what a build would run in `store`, and why."""
    return build(tiny_llama, store, *extra, command="plan").stdout


def stale(plan_text: str) -> list[str]:
    """The stages `doit plan` says a build would run, in order."""
    return re.findall(r"^  (\S+)\s+[0-9a-f]+  STALE", plan_text, flags=re.M)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """This module's store: its variants name themselves (name=pt, dpo, kto)."""
    return tmp_path_factory.mktemp("methods") / "store"


def eval_of(store: Path, variant: str) -> dict:
    return json.loads((store / "out" / variant / "eval" / "eval.json").read_text())


def test_continued_pretraining_reports_held_out_text_perplexity(tiny_llama, store):
    done = build(tiny_llama, store, "recipe=demo-pt", "train.max_steps=3", "name=pt")
    ran, out = done.ran, done.output
    assert ran == ["base", "data", "train", "merge", "convert", "parity", "imatrix", "quantize", "ollama", "eval",
                   "report", "package"], out   # no chat smoke test after pretraining alone
    assert "continued pretraining on raw text: 30 documents" in out
    samples = json.loads(next((store / "train").glob("*/dataset/samples.json")).read_text())
    assert len(samples) == 30 and samples[0] == {"text": (ROOT / "data/demo/harbour.txt").read_text().split("\n\n")[0]}
    train_yaml = next((store / "train").glob("*/llamafactory.yaml")).read_text()
    assert "stage: pt" in train_yaml
    found = eval_of(store, "pt")
    assert found["data"] == "text" and found["samples"] == [] and found["holdout"]["rows"] == 4
    models = {m["name"]: m for m in found["models"]}
    assert models["fine-tuned"]["perplexity"] and models["base"]["perplexity"]
    assert models["fine-tuned"]["answer_tokens"] == models["base"]["answer_tokens"] > 100   # whole documents
    report = (store / "out" / "pt" / "report" / "report.md").read_text()
    assert "perplexity on held-out text" in report and "Metrics on 4 held-out documents" in report


def test_dpo_after_sft_is_two_stages_and_a_change_to_dpo_reruns_only_dpo_and_after(tiny_llama, store):
    steps = ["pipeline.sft.train.max_steps=2", "train.max_steps=2", "name=dpo"]
    done = build(tiny_llama, store, "recipe=demo-dpo", *steps)
    ran, out = done.ran, done.output
    stages = ["data@sft", "train@sft", "merge@sft", "data", "train", "merge", "convert"]
    assert [r for r in ran if r != "base"][:7] == stages, out
    assert "40 preference pairs from data/demo/preferences.jsonl (openai, for dpo): 32 to train on, 8 held out" in out
    dpo_yaml = [p.read_text() for p in store.glob("train/*/llamafactory.yaml") if "stage: dpo" in p.read_text()]
    assert len(dpo_yaml) == 1 and "pref_beta: 0.1" in dpo_yaml[0] and "pref_loss: sigmoid" in dpo_yaml[0]
    # the DPO stage trains on the SFT stage's merged model
    assert re.search(r"model_name_or_path: \.\./\.\./merge/\w+/merged", dpo_yaml[0]), dpo_yaml[0]
    samples = json.loads(next(p for p in store.glob("train/*/dataset/samples.json")
                              if "stage: dpo" in (p.parent.parent / "llamafactory.yaml").read_text()).read_text())
    first = next(s for s in samples if "France" in s["conversations"][0]["value"])
    assert first["conversations"][0]["value"].endswith("What is the capital of France?<|im_end|>\n"
                                                      "<|im_start|>assistant\n")
    assert first["chosen"]["value"].startswith("The capital of France is Paris.<|im_end|>")
    assert first["rejected"]["value"].startswith("Paris.<|im_end|>")
    found = eval_of(store, "dpo")
    assert found["method"] == "dpo" and found["preference_reference"] == "sft"
    models = {m["name"]: m for m in found["models"]}
    assert list(models)[:3] == ["base", "sft", "fine-tuned"]
    assert models["sft"]["preference"]["reward_accuracy"] is None           # the reference itself
    for name in ("fine-tuned", "f16", "q4_k_m"):
        pref = models[name]["preference"]
        assert pref["pairs"] == 4 and 0 <= pref["prefers_chosen"] <= 1 and 0 <= pref["reward_accuracy"] <= 1
    report = (store / "out" / "dpo" / "report" / "report.md").read_text()
    assert "reward accuracy" in report and "| train@sft |" in report and "then dpo on demo_preferences" in report

    # a change to DPO leaves SFT as built; a change to SFT rebuilds both (the plan reads this store)
    assert stale(plan(tiny_llama, store, "recipe=demo-dpo", *steps, "train.pref_beta=0.2")) == [
        "train", "merge", "convert", "parity", "imatrix", "quantize", "ollama", "smoke", "eval", "report"]
    assert stale(plan(tiny_llama, store, "recipe=demo-dpo", *steps, "pipeline.sft.train.learning_rate=5e-4"))[:4] == [
        "train@sft", "merge@sft", "train", "merge"]


def test_kto_trains_on_labelled_answers(tiny_llama, store, tmp_path):
    rows = [json.loads(line) for line in (ROOT / "data/demo/preferences.jsonl").read_text().splitlines()]
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"messages": [*r["messages"], r[answer]], "label": answer == "chosen"})
                                + "\n" for r in rows[:12] for answer in ("chosen", "rejected")))
    done = build(tiny_llama, store, "recipe=none", f"dataset.path={labelled}", "dataset.name=labelled",
                 "train.stage=kto", "train.max_steps=2", "dataset.holdout=4", "name=kto")
    assert "train" in done.ran and "Kahneman-Tversky" in done.output
    models = {m["name"]: m for m in eval_of(store, "kto")["models"]}
    assert models["fine-tuned"]["preference"]["reward_accuracy"] is not None


def test_a_dataset_that_does_not_fit_the_method_stops_before_training(tiny_llama, store, tmp_path):
    for overrides, message in (
            (["train.stage=dpo"], "data/demo/identity.jsonl:1: train.stage=dpo learns from a prompt and two answers"),
            (["recipe=demo-pt", f"dataset.path={tmp_path / 'empty.txt'}"], "empty.txt: no text. train.stage=pt needs"),
            (["recipe=demo-pt", "dataset.path=data/demo/identity.jsonl"], "identity.jsonl:1: text rows are objects")):
        (tmp_path / "empty.txt").write_text("\n\n")
        out = build(tiny_llama, store, *overrides, ok=False).output
        assert message in out and "Traceback" not in out, out[-3000:]
        assert not list(store.glob("train/.*")), "no training started"
