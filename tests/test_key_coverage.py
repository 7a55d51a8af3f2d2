"""The build's core promise: an artifact's key covers everything the artifact contains.

A stage runs with a view of the config that holds exactly the values its key hashed, the values an
upstream key covers (`upstream_reads`) and the values that change how, never what, it builds
(`uses`). These tests check that the view holds nothing else, that a read outside it fails the
build with a message naming the key, that the declarations are sound, and that the report (which
shows the whole config) has a key that covers all of it."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from llmbuild.cli import tasks
from llmbuild.config import schema
from llmbuild.config.compose import compose
from llmbuild.config.derived import DERIVED
from llmbuild.errors import StageError
from llmbuild.facts.layout import stage_of
from llmbuild.files.templates import TemplateDir, UndeclaredTemplate
from llmbuild.plan.graph import build_plan
from llmbuild.plan.stages import STAGES
from llmbuild.plan.view import UncoveredRead, stage_config

ROOT = Path(__file__).resolve().parent.parent
ALL_TARGETS = ["target=[ollama,llamacpp,vllm,hf]", "target.ollama.adapter=true", "quant.split_max_size=2G",
               "target.vllm.quants=[fp8]"]


def leaf_keys(kind=schema.BuildConfig, prefix="") -> list[str]:
    """Every dotted key of the schema, down to the leaves (optional groups included)."""
    out = []
    for field in dataclasses.fields(kind):
        hint = typing.get_type_hints(kind)[field.name]
        is_list = typing.get_origin(hint) in (list, typing.List, dict, typing.Dict)   # a map of groups: one leaf
        nested = None if is_list else next(
            (a for a in (*getattr(hint, "__args__", ()), hint) if dataclasses.is_dataclass(a)), None)
        key = f"{prefix}{field.name}"
        out += leaf_keys(nested, f"{key}.") if nested else [key]
    return out


def covers(read: str, key: str) -> bool:
    return key == read or key.startswith(read + ".")


def unbuilt(key: str) -> bool:
    return any(covers(k, key) for k in schema.NOT_BUILT)


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    return build_plan(compose(ROOT, [f"store={store}", *ALL_TARGETS]), ROOT, strict=False)


def slot_of(plan, stage: str) -> str:
    """The stage's slot in the plan (a vLLM checkpoint's is vllm_quant@<scheme>)."""
    return next(slot for slot, node in plan.nodes.items() if node.stage == stage)


def test_the_plan_has_every_stage(plan):
    assert {stage_of(slot) for slot in plan.nodes} == set(STAGES)


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_sees_exactly_what_its_key_covers(plan, stage):
    spec = STAGES[stage]
    view = stage_config(plan, slot_of(plan, stage))
    declared = (*spec.reads, *spec.upstream_reads, *spec.uses, *spec.checks)
    for key in leaf_keys():
        visible = OmegaConf.select(view, key, default="<absent>") != "<absent>"
        allowed = any(covers(read, key) for read in declared) and not (unbuilt(key) and key not in spec.uses)
        assert visible == allowed, f"{stage}: {key} is {'visible' if visible else 'hidden'}"
    for derived in DERIVED:
        assert (derived in view) == (derived in spec.reads)


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_read_outside_the_view_fails_the_build_naming_the_key(plan, stage, monkeypatch, tmp_path):
    """A planted uncovered read: the stage reads a key its key does not cover (for every stage,
    one it really lacks); the task fails with that key and the fix, and no artifact is written."""
    spec = STAGES[stage]
    declared = (*spec.reads, *spec.upstream_reads, *spec.uses, *spec.checks)
    planted = next(k for k in leaf_keys() if not any(covers(r, k) for r in declared))

    def run(ctx):
        node = ctx.cfg
        for part in planted.split("."):
            node = node[part]

    monkeypatch.setattr(f"llmbuild.stages.{stage}.run", run)
    slot = slot_of(plan, stage)
    failed = tasks.run_stage(plan, slot)
    assert failed is not None, f"{stage} read {planted} and built anyway"
    message = str(failed.message if hasattr(failed, "message") else failed)
    assert planted.split(".")[0] in message and "does not cover" in message and "plan/stages.py" in message
    assert not plan.store.joinpath(stage, plan.nodes[slot].key).exists()


def test_upstream_reads_are_covered_by_an_upstream_key():
    def ancestors(stage: str) -> set[str]:
        spec = STAGES[stage]
        direct = {stage_of(s) for s in (*spec.upstream, *spec.optional_upstream)}
        return direct.union(*(ancestors(s) for s in direct)) if direct else set()

    for stage, spec in STAGES.items():
        for key in spec.upstream_reads:
            assert any(covers(read, key) for up in ancestors(stage) for read in STAGES[up].reads), (stage, key)
            assert not unbuilt(key), (stage, key)


def test_uses_and_not_built_keys_exist_and_are_explained():
    keys = leaf_keys()
    for key, why in schema.NOT_BUILT.items():
        assert any(covers(key, k) for k in keys) and why, key
    for stage, spec in STAGES.items():
        assert all(key in schema.NOT_BUILT for key in spec.uses), f"{stage}: explain every `uses` key in NOT_BUILT"


def test_checked_keys_are_read_by_a_later_stage():
    """A stage may look at a later stage's values only to stop a build that stage cannot finish: the
    later stage's key covers them, so they change what it builds and rebuild it."""
    def descendants(stage: str) -> set[str]:
        direct = {s for s, spec in STAGES.items()
                  if stage in {stage_of(u) for u in (*spec.upstream, *spec.optional_upstream)}}
        return direct.union(*(descendants(s) for s in direct)) if direct else set()

    for stage, spec in STAGES.items():
        for key in spec.checks:
            assert any(covers(read, key) for later in descendants(stage) for read in STAGES[later].reads), (stage, key)


def test_the_report_key_covers_every_group_it_shows():
    """report.md and report.html show the resolved config: every group of the schema but the keys
    that build nothing is part of the report's key."""
    groups = [f.name for f in dataclasses.fields(schema.BuildConfig) if f.name not in schema.NOT_BUILT]
    assert set(groups) <= set(STAGES["report"].reads)


@pytest.mark.parametrize("override", [
    "target.ollama.model_name=quill", "quant.split_max_size=2G", "target=[ollama,vllm]", "target.hf.repo_id=me/x",
    "prompt.temperature=0.2", "model.license=MIT", "smoke.max_tokens=7",
])
def test_a_value_the_report_shows_changes_the_report_key(plan_for, override):
    """`doit build` and `doit build target.ollama.model_name=quill` shared one report before."""
    before, after = plan_for(*ALL_TARGETS[:1]), plan_for(*ALL_TARGETS[:1], override)
    assert before.nodes["report"].key != after.nodes["report"].key
    shown = OmegaConf.to_container(stage_config(after, "report"))
    key, _, value = override.partition("=")
    assert key.split(".")[0] in shown


@pytest.mark.parametrize("override", ["quant.nthread=1", "jobs.train_at_once=2", "target.llamacpp.port=9000"])
def test_keys_that_build_nothing_change_no_key_and_are_not_shown(plan_for, tmp_path, override):
    before, after = plan_for(), plan_for(override)
    assert {s: n.key for s, n in before.nodes.items()} == {s: n.key for s, n in after.nodes.items()}
    shown = OmegaConf.to_container(stage_config(after, "report"))
    key = override.split("=")[0]
    assert OmegaConf.select(OmegaConf.create(shown), key, default="<absent>") == "<absent>"


def test_a_stage_reads_only_the_templates_its_key_hashes(tmp_path):
    templates = TemplateDir(ROOT, ["Modelfile.j2"])
    assert templates.text("Modelfile.j2")
    with pytest.raises(UndeclaredTemplate, match="templates/hf/README.md.j2 is read but not declared"):
        templates.text("hf/README.md.j2")
    with pytest.raises(StageError):
        templates.render("report/report.md.j2")


def test_uncovered_read_is_a_stage_error():
    assert issubclass(UncoveredRead, StageError)
