"""Sweeps, plan, diff and lock, checked on plans: no tool runs here."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from llmbuild.cli.plan_text import plan_text
from llmbuild.cli.session import make_plans
from llmbuild.cli.tasks import tasks_for
from llmbuild.errors import ConfigError
from llmbuild.plan import explain
from llmbuild.review import diff, git
from llmbuild.review import lock as lock_files
from llmbuild.store.artifacts import Store

ROOT = Path(__file__).resolve().parent.parent


def task_counts(plans) -> Counter:
    return Counter(t["basename"] for t in tasks_for(plans) if t.get("name"))


def test_sweep_shares_upstream_stages_in_one_graph(tmp_path):
    plans = make_plans(ROOT, ["lora.r=8,16,32", "quant=q4_k_m,q8_0", f"store={tmp_path}"], "sweep")
    assert len(plans) == 6
    # per training: the swept q4_k_m and q8_0, plus q5_k_m from the demo's eval ladder (its q8_0 is shared),
    # and q4_k_m and q5_k_m without their importance matrix (eval.compare_imatrix); one matrix each
    assert task_counts(plans) == {"base": 1, "data": 1, "train": 3, "merge": 3, "convert": 3, "parity": 3,
                                  "imatrix": 3, "quantize": 15, "ollama": 6, "smoke": 6, "eval": 6, "report": 6,
                                  "package": 6}


def test_sweep_grammar_is_hydras(tmp_path):
    store = f"store={tmp_path}"
    ranks = [p.composed.cfg.lora.r for p in make_plans(ROOT, ["lora.r=range(8,33,8)", store], "sweep")]
    assert ranks == [8, 16, 24, 32]
    quants = {p.composed.cfg.quant.type for p in make_plans(ROOT, ["quant=glob(q4_k*)", store], "sweep")}
    assert quants == {"q4_k_m", "q4_k_s"}
    assert [p.composed.cfg.lora.r for p in make_plans(ROOT, ["lora.r=choice(4,8)", store], "sweep")] == [4, 8]


def test_variant_names_are_stable_and_show_the_swept_values(tmp_path):
    plans = make_plans(ROOT, ["lora.r=8,16", "quant=q8_0", f"store={tmp_path}"], "sweep")
    assert [p.variant for p in plans] == ["demo_lora.r-8_quant-q8_0", "demo_lora.r-16_quant-q8_0"]
    again = make_plans(ROOT, ["lora.r=8,16", "quant=q8_0", f"store={tmp_path}"], "sweep")
    assert [p.variant for p in again] == [p.variant for p in plans]


def test_commands_shown_back_are_spelled_as_the_readme_teaches(tmp_path):
    """`recipe=demo-pt`, not Hydra's group name `recipes=demo-pt`, in the closing lines, the
    variant's config.yaml and a sweep's table."""
    from llmbuild.cli.summary import summary
    from llmbuild.cli.sweep_summary import swept_values
    from llmbuild.plan.outputs import config_text

    (plan,) = make_plans(ROOT, ["recipe=demo-pt", f"store={tmp_path}"], "build")
    assert summary(plan).endswith(f"doit serve recipe=demo-pt store={tmp_path}")
    assert "overrides: recipe=demo-pt" in config_text(plan).splitlines()[0]
    (plan,) = make_plans(ROOT, ["recipe=none", f"store={tmp_path}"], "build")
    assert "doit serve recipe=none" in summary(plan)
    plans = make_plans(ROOT, ["recipe=demo,demo-pt", f"store={tmp_path}"], "sweep")
    assert swept_values(plans) == [{"recipe": "demo"}, {"recipe": "demo-pt"}]


def test_build_refuses_a_sweep_and_names_doit_sweep(tmp_path):
    with pytest.raises(ConfigError, match=r"lora\.r=8,16 is a sweep.*doit sweep"):
        make_plans(ROOT, ["lora.r=8,16", f"store={tmp_path}"], "build")


# SmolLM2-135M-Instruct's config.json, as the demo's base stage writes it: what plan estimates scale by
SMOLLM2_CONFIG = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                  "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
                  "tie_word_embeddings": True}


def fake_build(plan, seconds=3.0):
    """Record every artifact of a plan as built (empty but for the base model's config.json and the
    data stage's 36 training rows), as if the demo's build had run."""
    store = Store(plan.store)
    for slot, node in plan.nodes.items():
        stage = node.stage
        if not store.is_complete(stage, node.key):
            with store.building(stage, node.key, {"key": node.key, **node.payload, "slot": slot,
                                                  "sources": node.inputs}) as out:
                if stage == "base":
                    (out / "config.json").write_text(json.dumps(SMOLLM2_CONFIG))
                if stage == "data":
                    (out / "train.jsonl").write_text("{}\n" * 36)
            manifest = store.path(stage, node.key) / "manifest.json"
            data = json.loads(manifest.read_text())
            data["seconds"] = seconds
            manifest.write_text(json.dumps(data))


def test_plan_says_why_in_config_terms_and_estimates_cost(tmp_path):
    (built,) = make_plans(ROOT, [f"store={tmp_path}", "eval.quants=[]"])  # no ladder: its q8_0 would be reused
    fake_build(built, seconds=4.0)
    (changed,) = make_plans(ROOT, ["quant=q8_0", f"store={tmp_path}", "eval.quants=[]"])
    statuses = {s.stage: s for s in explain.explain(changed)}
    assert all(statuses[s].up_to_date for s in ("base", "data", "train", "merge", "convert", "parity"))
    assert statuses["quantize"].reasons == ("quant.type: 'q4_k_m' -> 'q8_0'",)
    assert statuses["ollama"].reasons == ("upstream quantize is rebuilt",)
    assert statuses["quantize"].earlier_seconds == 4.0
    text = plan_text([changed])
    assert re.search(r"^  quantize  \w{8}  STALE, ~4 s: quant.type: 'q4_k_m' -> 'q8_0'$", text, re.M), text
    assert "Would run 1 quantize, 1 ollama, 1 smoke, 1 eval, 1 report (about 20 s by earlier builds" in text


def test_plan_scales_estimates_by_the_work_and_says_when_training_cannot_run_here(tmp_path, monkeypatch):
    """A 7.6B model planned on a store that holds the 135M demo: its stages take the demo's time
    scaled by the parameters (training: by parameters x tokens), never the demo's own minutes; and
    on a machine without a GPU, whose memory the training would not fit, the plan says so."""
    from llmbuild.cli import estimates

    (built,) = make_plans(ROOT, [f"store={tmp_path}", "eval.quants=[]"])
    fake_build(built, seconds=300.0)
    monkeypatch.setattr(estimates, "visible_gpus", lambda: 0)
    monkeypatch.setattr(estimates, "_ram_bytes", lambda: 24 * 2**30)
    (seven_b,) = make_plans(ROOT, ["model=qwen7b", f"store={tmp_path}", "eval.quants=[]"])
    costs = {s.stage: estimates.estimate(seven_b, s) for s in explain.explain(seven_b) if not s.up_to_date}
    ratio = 7_615_616_512 / 134_515_008   # Qwen2.5-7B's parameters over SmolLM2-135M's
    assert costs["train"].seconds == pytest.approx(300 * ratio) and "135M-parameter build" in costs["train"].basis
    assert costs["merge"].seconds == pytest.approx(300 * ratio)
    assert costs["ollama"].seconds == 300.0, "writing a Modelfile takes as long for any model"
    text = plan_text([seven_b])
    assert f"STALE, ~{300 * ratio / 3600:.1f} h (135M-parameter build x{ratio:.3g} the work)" in text
    assert "the training cannot run on this machine: training 7.6B parameters needs about" in text
    assert "GiB and this machine has 24 GiB of memory and no GPU" in text

    (longer,) = make_plans(ROOT, ["train.num_train_epochs=12", f"store={tmp_path}", "eval.quants=[]"])
    (train,) = [s for s in explain.explain(longer) if s.stage == "train"]
    assert estimates.estimate(longer, train).seconds == pytest.approx(600.0), "twice the epochs, twice the tokens"
    (other_data,) = make_plans(ROOT, ["recipe=demo-pt", f"store={tmp_path}", "eval.quants=[]"])
    (train,) = [s for s in explain.explain(other_data) if s.stage == "train"]
    found = estimates.estimate(other_data, train)
    assert found.seconds is None and "not known until the data stage has run" in found.basis


def test_plan_names_a_template_switch_as_one(tmp_path):
    (built,) = make_plans(ROOT, [f"store={tmp_path}", "eval.quants=[]"])
    fake_build(built)
    (qwen,) = make_plans(ROOT, ["prompt.template=qwen", f"store={tmp_path}", "eval.quants=[]"])
    (train,) = [s for s in explain.explain(qwen) if s.stage == "train"]
    assert "templates/chat/chatml.jinja -> templates/chat/qwen.jinja" in train.reasons, train.reasons


def test_plan_reuses_the_eval_ladders_quant_for_a_quant_change(tmp_path):
    (built,) = make_plans(ROOT, [f"store={tmp_path}"])   # the demo ladder quantizes q5_k_m and q8_0 too
    fake_build(built, seconds=4.0)
    (changed,) = make_plans(ROOT, ["quant=q8_0", f"store={tmp_path}"])
    statuses = {s.stage: s for s in explain.explain(changed)}
    assert statuses["quantize"].up_to_date and statuses["quantize@q5_k_m"].up_to_date
    assert "Would run 1 ollama, 1 smoke, 1 eval, 1 report" in plan_text([changed])


def test_plan_names_tool_version_changes(tmp_path, monkeypatch):
    (built,) = make_plans(ROOT, [f"store={tmp_path}"])
    fake_build(built)
    from llmbuild.plan import keys
    real = keys.tool_version
    monkeypatch.setattr(keys, "tool_version", lambda d: "0.3.99" if d == "llama_cpp_python" else real(d))
    (later,) = make_plans(ROOT, [f"store={tmp_path}"])
    reasons = {s.stage: s.reasons for s in explain.explain(later)}
    assert f"llama_cpp_python {real('llama_cpp_python')} -> 0.3.99" in reasons["convert"]


def test_plan_of_a_new_store_says_never_built(tmp_path):
    (plan,) = make_plans(ROOT, [f"store={tmp_path}"])
    assert explain.explain(plan)[0].reasons[0].startswith("never built")


def test_diff_lists_keys_and_the_stages_they_rebuild(tmp_path):
    (before,) = make_plans(ROOT, [f"store={tmp_path}"])
    (after,) = make_plans(ROOT, ["prompt.temperature=0.2", "lora.r=16", f"store={tmp_path}"])
    doc = diff.diff_document(before, after, ("a", "b"))
    # lora.alpha follows lora.r (2 x r) unless it is set
    assert doc["changes"] == [{"key": "lora.alpha", "before": 16, "after": 32},
                              {"key": "lora.r", "before": 8, "after": 16},
                              {"key": "prompt.temperature", "before": 0.7, "after": 0.2}]
    assert doc["rebuild"] == ["train", "merge", "convert", "parity", "imatrix", "quantize", "ollama", "smoke", "eval",
                              "report"]
    markdown = diff.diff_markdown(doc)
    assert "| `lora.r` | `8` | `16` |" in markdown and "reused: base, data" in markdown


def test_diff_against_a_git_revision_reads_that_revisions_files():
    import subprocess
    committed = subprocess.run(["git", "show", "HEAD:conf/config.yaml"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout
    with git.project_at(ROOT, "HEAD") as old_root:
        assert (old_root / "conf" / "config.yaml").read_text() == committed
        assert (old_root / "conf" / "recipes" / "demo.yaml").is_file(), "the recipes link comes along"


def test_unknown_revision_is_a_clear_error():
    with pytest.raises(ConfigError, match="cannot read revision 'no-such-rev'"):
        with git.project_at(ROOT, "no-such-rev"):
            pass


def test_resolved_config_hides_secrets(tmp_path):
    (plan,) = make_plans(ROOT, ["+train.extra.hf_hub_token=hf_abc123", f"store={tmp_path}"])
    resolved = diff.resolved(plan.composed)
    assert resolved["train"]["extra"]["hf_hub_token"] == "***"
    assert resolved["smoke"]["max_tokens"] == 96 and resolved["eval"]["max_new_tokens"] == 64  # counts, not secrets


@pytest.mark.parametrize("lock", sorted((ROOT / "recipes").glob("*.lock.yaml")), ids=lambda p: p.name)
def test_committed_lock_files_are_up_to_date(lock, tmp_path):
    recipe = lock.name.removesuffix(".lock.yaml")
    fresh = lock_files.lock_document(lock_files.plan_recipe(ROOT, recipe, tmp_path))
    committed = yaml.safe_load(lock.read_text())
    assert committed == json.loads(json.dumps(fresh)), (
        f"{lock.relative_to(ROOT)} is out of date: run `doit lock recipe={recipe}` and commit it")


def test_a_lock_names_the_tools_its_config_asks_for(tmp_path):
    """The GPU recipe's keys cover Liger's and Triton's versions (train.liger_kernel, train.compile), so its
    lock shows them for review; the CPU demo's does not."""
    gpu = lock_files.lock_document(lock_files.plan_recipe(ROOT, "toolcall-qwen7b", tmp_path))["tools"]
    cpu = lock_files.lock_document(lock_files.plan_recipe(ROOT, "demo", tmp_path))["tools"]
    assert {"liger-kernel", "triton"} <= set(gpu) and not {"liger-kernel", "triton"} & set(cpu)
    assert {"llamafactory", "torch", "gguf"} <= set(cpu)


def test_every_recipe_has_a_lock():
    recipes = {p.stem for p in (ROOT / "recipes").glob("*.yaml") if not p.name.endswith(".lock.yaml")}
    locks = {p.name.removesuffix(".lock.yaml") for p in (ROOT / "recipes").glob("*.lock.yaml")}
    assert recipes == locks, "run `doit lock recipe=NAME` for each recipe and commit the lock"


def test_a_value_with_a_comma_is_refused_with_the_users_value_quoted(tmp_path):
    from llmbuild.cli.session import SINGLE

    with pytest.raises(ConfigError, match=r"is a sweep.*\"prompt.system='Be brief, be kind.'\"$"):
        make_plans(ROOT, ["prompt.system=Be brief, be kind.", f"store={tmp_path}"], how=SINGLE)
    (plan,) = make_plans(ROOT, ["prompt.system='Be brief, be kind.'", f"store={tmp_path}"], how=SINGLE)
    assert plan.composed.cfg.prompt.system == "Be brief, be kind."
