"""No credential in any name, key, artifact or message: a token given as an override reaches the
tool through its environment and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmbuild.cli import sweep_summary, tasks
from llmbuild.cli.plan_text import plan_text
from llmbuild.cli.summary import summary
from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError
from llmbuild.plan import outputs
from llmbuild.plan.graph import build_plan
from llmbuild.plan.view import stage_config
from llmbuild.review import diff
from llmbuild.stages.train import arguments

from doit_cli import doit

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_FAKE123456"
WITH_TOKEN = f"+train.extra.hf_hub_token={TOKEN}"


def test_a_token_is_in_no_name_key_view_or_text(plan_for):
    plan, plain = plan_for(WITH_TOKEN), plan_for()
    assert TOKEN not in plan.variant and plan.variant == plain.variant
    assert {s: n.key for s, n in plan.nodes.items()} == {s: n.key for s, n in plain.nodes.items()}, \
        "a credential changes access, not an artifact"
    assert TOKEN not in json.dumps([n.payload for n in plan.nodes.values()])
    view = stage_config(plan, "train")
    assert "hf_hub_token" not in view.train.extra
    assert "hf_hub_token" not in arguments(view, base="b", dataset_dir="d", output_dir="a")
    shown = [outputs.config_text(plan), json.dumps(outputs.record(plan)), summary(plan), plan_text([plan]),
             diff.diff_markdown(diff.diff_document(plain, plan, ("a", "b"))),
             sweep_summary.sweep_name(["lora.r=8,16", WITH_TOKEN])]
    assert not [text for text in shown if TOKEN in text]
    assert "hf_hub_token: '***'" in outputs.config_text(plan)


@pytest.mark.parametrize("command", [["diff", "recipe=demo"], ["plan"], ["size"], ["list"], ["plan", "lora.r=8,16"]])
def test_no_command_prints_a_token(tmp_path, command):
    done = doit(command[0], *command[1:], WITH_TOKEN, store=tmp_path)
    assert TOKEN not in done.output


def test_the_tool_gets_the_token_through_its_environment(plan_for):
    assert tasks.credentials(plan_for(WITH_TOKEN)) == {"HF_TOKEN": TOKEN}
    assert tasks.credentials(plan_for()) == {}


def test_a_credential_no_tool_reads_from_the_environment_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="train.extra.wandb_api_key") as err:
        compose(ROOT, [f"store={tmp_path}", "+train.extra.wandb_api_key=abc123secret"])
    assert "abc123secret" not in str(err.value)


def test_a_bad_value_for_a_credential_is_not_quoted(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_plan(compose(ROOT, [f"store={tmp_path}", "+train.extra.hf_hub_token=x", "lora.r=abc"]), ROOT)
    assert "hf_hub_token=x" not in str(err.value)
