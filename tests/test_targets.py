"""Deploy-target stages on fake upstream artifacts: what they write, without any model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from llmbuild.cli.tasks import stage_context
from llmbuild.config.compose import compose
from llmbuild.plan.graph import build_plan
from llmbuild.stages import vllm

ROOT = Path(__file__).resolve().parent.parent


def vllm_argv(tmp_path, *overrides, family="qwen"):
    from llmbuild.chat.setup import OWN, ChatSetup

    merge = tmp_path / "merge" / "k"
    (merge / "merged").mkdir(parents=True)
    (merge / "chat_template.jinja").write_text("{{ messages }}")
    (merge / "chat.json").write_text(ChatSetup(family, "{{ messages }}", OWN, None).to_json())
    out = tmp_path / "vllm" / "k2"
    out.mkdir(parents=True)
    plan = build_plan(compose(ROOT, [f"store={tmp_path / 'store'}", *overrides]), ROOT, strict=False)
    vllm.run(replace(stage_context(plan, "vllm", out), inputs={"merge": merge}))
    return json.loads((out / "vllm_command.json").read_text())


@pytest.mark.parametrize("overrides, family, parser", [
    (("recipe=toolcall-qwen7b", "target=[vllm]"), "qwen", "hermes"),        # Qwen2.5 tools
    (("model=llama3-8b-instruct", "target=[vllm]"), "llama3.1", "llama3_json"),
    (("target=[vllm]",), "qwen3", "hermes"),
    (("target=[vllm]", "target.vllm.tool_call_parser=pythonic"), "qwen", "pythonic"),
])
def test_vllm_command_has_the_families_tool_call_parser(tmp_path, overrides, family, parser):
    """The family is the one the merge recorded (detected from the model's own template)."""
    argv = vllm_argv(tmp_path, *overrides, family=family)
    assert argv[argv.index("--tool-call-parser") + 1] == parser and "--enable-auto-tool-choice" in argv


def test_vllm_command_names_model_template_and_loopback(tmp_path):
    argv = vllm_argv(tmp_path, "recipe=toolcall-qwen7b", "target=[vllm]", "target.vllm.max_model_len=8192",
                     "+target.vllm.extra_args=[--gpu-memory-utilization,0.9]")
    assert argv[:5] == ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", "../../merge/k/merged"]
    assert argv[argv.index("--served-model-name") + 1] == "Qwen2.5-7B-Instruct"
    assert argv[argv.index("--max-model-len") + 1] == "8192" and argv[-2:] == ["--gpu-memory-utilization", "0.9"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"


def test_targets_not_asked_for_have_no_stage(plan_for):
    assert {"vllm", "hf"}.isdisjoint(plan_for().nodes) and "ollama" in plan_for().nodes
    others = plan_for("target=[vllm,hf]").nodes
    assert {"vllm", "hf"} <= set(others) and "ollama" not in others


def test_serve_on_a_busy_port_is_one_line_before_anything_is_built(tmp_path):
    """Another server listens on the port: said before the build, not at the end of the server's output."""
    import socket

    from doit_cli import doit

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = doit("serve", f"target.llamacpp.port={port}", store=tmp_path / "store", ok=False)
    assert f"port {port} on 127.0.0.1 is in use" in done.output and f"target.llamacpp.port={port + 1}" in done.output
    assert "Traceback" not in done.output and not list((tmp_path / "store").glob("*/*/manifest.json")), done.output


def test_a_server_never_outlives_doit_serve_even_when_it_is_killed():
    """SIGKILL of the process serving (no handler runs) still stops the server it started."""
    import subprocess
    import sys
    import time

    serving = subprocess.Popen([sys.executable, "-c", (
        "import sys; from llmbuild.adapters.process import run_in_foreground; "
        "run_in_foreground([sys.executable, '-c', "
        "'import os, time; print(os.getpid(), flush=True); time.sleep(600)'])")],
        stdout=subprocess.PIPE, text=True)
    server = int(serving.stdout.readline())
    serving.kill()
    serving.wait()

    def running(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"

    deadline = time.monotonic() + 10
    while running(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(server), "the server outlived the killed `doit serve`"
