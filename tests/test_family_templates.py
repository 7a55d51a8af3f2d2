"""Every chat family's Ollama TEMPLATE against its publishers' own chat templates: the parity suite
rendered by transformers' apply_chat_template on each official template (llama.cpp's copies,
unpacked into llmbuild/_llama_cpp/models/templates at install) and by Go's text/template as an
Ollama server runs the family's templates/ollama/<family>.gotmpl. Also: each template's text is
detected as its family, and its default system prompt (the Modelfile's SYSTEM) is read off it.

No model weights: the tokenizer is an in-memory one whose BOS/EOS are the family's. Two
conventions the comparison follows, both those of Ollama and llama.cpp's server:
- no BOS in the TEMPLATE: Ollama's runner adds it while tokenizing (the GGUF's add_bos_token), so
  the official rendering is compared without its leading BOS (llmbuild's llama3.gotmpl does the same);
- tool-call arguments reach templates as objects (chat.conversation.for_template), as transformers
  documents and vLLM and llama.cpp's server pass them.
Needs `go` (README.md, Set up: golang-go)."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path
from typing import Callable

import pytest

from llmbuild.adapters import go_template
from llmbuild.chat import parity
from llmbuild.chat.conversation import for_template
from llmbuild.chat.source import default_system
from llmbuild.chat.templates import hf_chat_template, ollama_template
from llmbuild.facts.chat_families import FAMILIES, TEMPLATE_VARIABLES, builtin, detect

from families import BUILTIN_TOKENS, NOT_OURS, OFFICIALS, R1, REJECTS, official_text

ROOT = Path(__file__).resolve().parent.parent
# Llama 3.2's and Mistral Small's templates write today's date; llmbuild renders every template with
# a fixed day, and the TEMPLATE cannot write today's (Go's text/template in Ollama has no date function)
@pytest.fixture
def go():
    if shutil.which("go") is None:
        pytest.skip("needs Go's text/template: `go` is not on PATH (README.md, Set up: apt-get install golang-go)")


@cache
def tokenizer(bos: str | None, eos: str):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"<unk>": 0}, unk_token="<unk>")),
                                   unk_token="<unk>", bos_token=bos, eos_token=eos)


def renderer(text: str, bos: str | None, eos: str, **kwargs) -> Callable[[list, list, bool], str]:
    """(messages, tools, add_generation_prompt) -> the template's text through transformers, less
    the leading BOS that the tokenizer (llama.cpp's, Ollama's) adds."""
    tok = tokenizer(bos, eos)

    def render(messages: list, tools: list, add_generation_prompt: bool) -> str:
        text_ = tok.apply_chat_template(for_template(messages), tools=tools or None, chat_template=text,
                                        tokenize=False, add_generation_prompt=add_generation_prompt,
                                        **TEMPLATE_VARIABLES, **kwargs)
        return text_[len(bos):] if bos and text_.startswith(bos) else text_
    return render


def accepted(render, conversations) -> list[parity.Conversation]:
    """The conversations the template renders (Gemma 2 raises on a system message, Mistral Nemo on
    a tool call without a 9-character id)."""
    from jinja2 import TemplateError

    out = []
    for conversation in conversations:
        try:
            render(conversation.openai_messages(), conversation.tools, False)
        except TemplateError:
            continue
        out.append(conversation)
    return out


def system_of(render) -> str:
    """The Modelfile's SYSTEM for this template: its default system prompt, "" when it has none."""
    from jinja2 import TemplateError

    try:
        return default_system(render) or ""
    except TemplateError:   # it takes no system message at all
        return ""


def gotmpl(family: str, eos: str) -> str:
    name = FAMILIES[family].ollama_template
    return ollama_template((ROOT / "templates" / name).read_text(encoding="utf-8"),
                           eos_token=FAMILIES[family].eos or eos, name=name)


def stops(family: str, eos: str) -> list[str]:
    return list(dict.fromkeys([*FAMILIES[family].stop, FAMILIES[family].eos or eos, eos]))


def checks_for(family: str, render, eos: str, conversations, render_ollama=None) -> list[parity.OllamaCheck]:
    render_ollama = render_ollama or go_template.request_renderer(gotmpl(family, eos), system_of(render), [])
    return parity.ollama_checks(conversations, render, render_ollama, [], stops(family, eos))


def assert_parity(checks: list[parity.OllamaCheck]) -> None:
    """The prompt Ollama builds is the official one (byte for byte, or up to the formatting of tool
    JSON that Go re-encodes), and the answer the model is trained to write ends at a stop right
    after its content."""
    report = parity.ollama_report(checks)
    assert checks, "no conversation of the suite is accepted by the template"
    for check in checks:
        assert parity.canonical_json(check.ollama) == parity.canonical_json(check.expected), report
        if not check.conversation.startswith("tool"):
            assert check.ollama == check.expected, report
        assert check.stop_problem is None, report


@pytest.mark.parametrize("official", OFFICIALS, ids=lambda o: o.id)
def test_official_template_is_detected_as_its_family(official):
    found = detect(official_text(official.file))
    assert found is not None and found.name == official.family


@pytest.mark.parametrize("official", OFFICIALS, ids=lambda o: o.id)
def test_default_system_is_read_off_the_official_template(official):
    from jinja2 import TemplateError

    render = renderer(official_text(official.file), official.bos, official.eos, **official.kwargs)
    if official.system is REJECTS:
        try:
            value = default_system(render)
        except TemplateError as err:
            assert "System role not supported" in str(err)
            return
        assert value is None
        return
    assert default_system(render) == official.system


@pytest.mark.parametrize("official", OFFICIALS, ids=lambda o: o.id)
def test_ollama_builds_the_official_templates_prompt(official, go):
    family = FAMILIES[official.family]
    render = renderer(official_text(official.file), official.bos, official.eos, **official.kwargs)
    conversations = accepted(render, parity.suite(family.tools, family.reasoning))
    checks = checks_for(official.family, render, official.eos, conversations)
    assert_parity(checks)


@pytest.mark.parametrize("name", NOT_OURS)
def test_a_template_of_another_format_is_no_familys(name):
    """An Ollama TEMPLATE for a look-alike format would prompt the model wrongly; no family is
    better (the ollama stage then says so)."""
    found = detect(official_text(name))
    assert found is None, f"{name} is detected as {found.name}, whose TEMPLATE writes another format"


def _with_ids(conversation: parity.Conversation, call_id: str) -> parity.Conversation:
    messages = []
    for message in conversation.messages:
        if message.get("tool_calls"):
            message = {**message, "tool_calls": [{**call, "id": call_id} for call in message["tool_calls"]]}
        elif message["role"] == "tool":
            message = {**message, "tool_call_id": call_id}
        messages.append(message)
    return parity.Conversation(f"{conversation.name}, with call ids", messages, conversation.system,
                               conversation.tools)


def _ollama_with_ids(template: str, system: str):
    """request_renderer, but the tool-call ids reach Ollama too (Mistral's format writes them)."""
    def render(requests: list[dict]) -> list[str]:
        converted = []
        for request in requests:
            messages = []
            for message in request["messages"]:
                out = go_template.ollama_message(message)
                for call, sent in zip(out.get("tool_calls", []), message.get("tool_calls") or [], strict=True):
                    call["id"] = sent.get("id", "")
                if message.get("tool_call_id"):
                    out["tool_call_id"] = message["tool_call_id"]
                messages.append(out)
            converted.append({"messages": messages, "tools": request["tools"]})
        return go_template.render(template, system, [], converted)
    return render


def test_mistral_tool_calls_with_ids(go):
    """Mistral Nemo refuses the suite's tool call (no id); with 9-character ids it writes them."""
    (tools,) = parity.TOOL_SUITE
    conversation = _with_ids(tools, "call00001")
    render = renderer(official_text("mistralai-Mistral-Nemo-Instruct-2407"), "<s>", "</s>")
    checks = checks_for("mistral", render, "</s>", [conversation],
                        _ollama_with_ids(gotmpl("mistral", "</s>"), system_of(render)))
    assert_parity(checks)
    assert '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city":"Paris"}, "id": "call00001"}]' in checks[0].ollama


def test_mistral_small_tool_calls_with_ids(go):
    """Mistral Small refuses the suite's tool call (no id) too; with 9-character ids: [CALL_ID], [ARGS],
    and the result as [TOOL_RESULTS]id[TOOL_CONTENT]."""
    (tools,) = parity.TOOL_SUITE
    conversation = _with_ids(tools, "call00001")
    render = renderer(official_text("Mistral-Small-3.2-24B-Instruct-2506"), "<s>", "</s>")
    checks = checks_for("mistral-small", render, "</s>", [conversation],
                        _ollama_with_ids(gotmpl("mistral-small", "</s>"), system_of(render)))
    assert_parity(checks)
    assert '[TOOL_CALLS]get_weather[CALL_ID]call00001[ARGS]{"city":"Paris"}</s>' in checks[0].ollama
    assert "[TOOL_RESULTS]call00001[TOOL_CONTENT]{" in checks[0].ollama


def test_deepseek_v3_tool_calls_and_outputs(go):
    """DeepSeek-V3.1 writes no tool definitions either, but calls (arguments as JSON) and outputs; the
    answer after the outputs has no <｜Assistant｜>."""
    render = renderer(official_text("deepseek-ai-DeepSeek-V3.1"), R1["bos"], R1["eos"])
    checks = checks_for("deepseek-v3", render, R1["eos"], list(parity.TOOL_SUITE))
    assert_parity(checks)
    output = '<｜tool▁output▁begin｜>{"temperature_c": 21, "sky": "clear"}<｜tool▁output▁end｜>'
    assert checks[0].ollama.endswith(output)
    assert "<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{" in checks[0].ollama


def test_deepseek_r1_tool_calls_and_outputs(go):
    """The family has no tool definitions (neither distill writes them), but the Qwen distill
    writes calls and outputs, and so does the TEMPLATE."""
    render = renderer(official_text("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"), R1["bos"], R1["eos"],
                      enable_thinking=True)
    checks = checks_for("deepseek-r1", render, R1["eos"], list(parity.TOOL_SUITE))
    assert_parity(checks)
    assert checks[0].ollama.endswith("<｜tool▁output▁end｜><｜tool▁outputs▁end｜>")


@pytest.mark.parametrize("family", builtin())
def test_llmbuilds_own_template_and_its_ollama_template_agree(family, go):
    assert family in BUILTIN_TOKENS, f"add the special tokens of {family}'s models to BUILTIN_TOKENS"
    bos, eos = BUILTIN_TOKENS[family]
    source = (ROOT / "templates" / FAMILIES[family].chat_template).read_text(encoding="utf-8")
    for system in ("You are a helpful assistant.", ""):
        render = renderer(hf_chat_template(source, system, FAMILIES[family].chat_template), bos, eos)
        assert detect(source).name == family
        conversations = accepted(render, parity.suite(FAMILIES[family].tools, FAMILIES[family].reasoning))
        assert len(conversations) == len(parity.suite(FAMILIES[family].tools, FAMILIES[family].reasoning))
        assert_parity(checks_for(family, render, eos, conversations))


def test_gemma_folds_the_system_prompt_into_the_first_turn(go):
    source = (ROOT / "templates" / "chat" / "gemma.jinja").read_text(encoding="utf-8")
    render = renderer(hf_chat_template(source, "", "chat/gemma.jinja"), "<bos>", "<eos>")
    text = render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], [], True)
    assert text == "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    checks = checks_for("gemma", render, "<eos>", list(parity.SUITE))
    (own,) = [c for c in checks if c.conversation == "one turn, own system"]
    assert own.status == "agree"
    assert own.ollama.startswith("<start_of_turn>user\nAnswer in one word.\n\nName a colour.")
