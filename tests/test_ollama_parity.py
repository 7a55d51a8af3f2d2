"""The Ollama side of prompt parity: every family's TEMPLATE, executed by Go's text/template with
the data an Ollama server gives it, builds the generation prompt the model was trained on, and the
trained answer ends at a Modelfile stop. Needs `go` (README set-up installs golang-go)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmbuild.adapters import go_template
from llmbuild.adapters.llama_cpp import chat_formatter
from llmbuild.chat import parity
from llmbuild.chat.templates import hf_chat_template, ollama_template
from llmbuild.facts.chat_families import FAMILIES, builtin

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = "You are a helpful assistant."
EOS = "<|im_end|>"


def check(root: Path, family: str, fewshot=(), system=SYSTEM, stops=None):
    chat, ollama = FAMILIES[family].chat_template, FAMILIES[family].ollama_template
    reference = chat_formatter(hf_chat_template((root / "templates" / chat).read_text(), system, chat), "", EOS)
    template = ollama_template((root / "templates" / ollama).read_text(), eos_token=EOS, name=ollama)
    fewshot = [dict(m) for m in fewshot]
    render_ollama = go_template.request_renderer(template, system, fewshot)
    trained = list(dict.fromkeys([*FAMILIES[family].stop, EOS]))   # where the train stage ends answers
    return parity.ollama_checks(parity.suite(FAMILIES[family].tools), reference, render_ollama, fewshot,
                                stops if stops is not None else trained, trained)


def test_go_is_installed():
    assert shutil.which("go"), "Go is missing: apt-get install golang-go (README.md, Set up)"


@pytest.mark.parametrize("family", builtin())   # the others: tests/test_family_templates.py
def test_ollama_builds_the_trained_prompt_for_every_family(family):
    checks = check(ROOT, family)
    report = parity.ollama_report(checks)
    assert all(c.status != "DIFFER" for c in checks), report
    plain = [c for c in checks if not c.conversation.startswith("tool")]
    assert all(c.status == "agree" for c in plain), report  # byte-identical without tool JSON


def test_tool_json_is_reencoded_by_go_and_reported_as_such():
    (tools,) = [c for c in check(ROOT, "qwen") if c.conversation.startswith("tool")]
    assert tools.status == "agree up to JSON formatting"
    assert '"required":["city"],"properties"' in tools.ollama  # Go's field order, compact
    assert '"properties": {"city"' in tools.expected         # Python's json.dumps, as trained


def test_few_shot_messages_and_own_system_prompt_reach_the_prompt():
    fewshot = [{"role": "user", "content": "Ping?"}, {"role": "assistant", "content": "Pong."}]
    checks = check(ROOT, "chatml", fewshot=fewshot)
    assert all(c.status == "agree" for c in checks), parity.ollama_report(checks)
    own = next(c for c in checks if c.conversation == "one turn, own system")
    assert own.ollama.startswith("<|im_start|>system\nAnswer in one word.<|im_end|>\n<|im_start|>user\nPing?")


def test_a_drifted_ollama_template_is_caught(tmp_path):
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    gotmpl = tmp_path / "templates" / "ollama" / "chatml.gotmpl"
    gotmpl.write_text(gotmpl.read_text().replace("<|im_start|>assistant", "<|im_start|>bot"))
    checks = check(tmp_path, "chatml")
    assert all(c.status == "DIFFER" for c in checks)
    assert "+<|im_start|>bot" in parity.ollama_report(checks)


def test_a_missing_stop_is_caught():
    """A Modelfile without the stop the model was trained to end its answers with."""
    checks = check(ROOT, "chatml", stops=["<|endoftext|>"])
    assert all(c.status == "DIFFER" and "Ollama would not stop" in c.stop_problem for c in checks)


def test_a_template_go_cannot_parse_is_a_clear_error():
    with pytest.raises(go_template.ToolError, match="does not parse"):
        go_template.render("{{ range .Messages }}{{ .Content }", "", [], [{"messages": [], "tools": None}])


@pytest.mark.parametrize("family", builtin())   # the others: tests/test_family_templates.py
def test_a_system_prompt_outside_the_basic_plane_round_trips(family):
    """An emoji in prompt.system used to become a surrogate pair in the chat template."""
    system = "Be brief 🙂, cite 𠀀 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢."
    checks = check(ROOT, family, system=system)
    assert all(c.status != "DIFFER" for c in checks), parity.ollama_report(checks)
    chat = FAMILIES[family].chat_template
    template = hf_chat_template((ROOT / "templates" / chat).read_text(), system, chat)
    assert system in template and "\\ud83d" not in template
    prompt = chat_formatter(template, "", EOS)([{"role": "user", "content": "Hi"}], [], True)
    assert system in prompt if family != "alpaca" else True
    prompt.encode("utf-8")  # no lone surrogates
