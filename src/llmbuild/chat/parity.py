"""Prompt-format parity: one conversation suite rendered by every consumer of the chat template,
compared as text. A difference is the classic post-export failure (a model that loops or babbles
because its serving prompt is not its training prompt), so it fails the build with a diff.

Renderings: LLaMA-Factory's training template (what the adapter learned), transformers'
apply_chat_template on the merged model, llama-cpp-python's Jinja chat formatter on the GGUF's
tokenizer.chat_template, and the Ollama TEMPLATE through Go's text/template (`ollama_checks`: each
conversation's generation prompt as an Ollama server builds it, and the stop that ends the answer).
The renderers themselves run those tools and live in adapters/; this module compares their text.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from .conversation import answer_span, last_answer

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                   "required": ["city"]}}}


@dataclass(frozen=True)
class Conversation:
    name: str
    messages: list[dict[str, Any]]           # OpenAI style, ending with the assistant's answer
    system: str | None = None                # None: the template's default system prompt
    tools: list[dict[str, Any]] = field(default_factory=list)

    def openai_messages(self) -> list[dict[str, Any]]:
        return ([{"role": "system", "content": self.system}] if self.system is not None else []) + self.messages


SUITE = (
    Conversation("one turn, default system", [{"role": "user", "content": "Hi!"},
                                               {"role": "assistant", "content": "Hello! How can I help?"}]),
    Conversation("one turn, own system", [{"role": "user", "content": "Name a colour."},
                                          {"role": "assistant", "content": "Blue."}], system="Answer in one word."),
    Conversation("several turns", [{"role": "user", "content": "What is 2 + 2?"},
                                   {"role": "assistant", "content": "4."},
                                   {"role": "user", "content": "And times 3?"},
                                   {"role": "assistant", "content": "12."}]),
    Conversation("Chinese text", [{"role": "user", "content": "你好，请用一句话介绍你自己。"},
                                  {"role": "assistant", "content": "我是一个乐于助人的助手。"}]),
    Conversation("empty user message", [{"role": "user", "content": ""},
                                        {"role": "assistant", "content": "Did you mean to send something?"}]),
    Conversation("emoji and rare scripts", [{"role": "user", "content": "Smile 🙂 and write 𠀀 (CJK B), 𝔘𝔫𝔦."},
                                            {"role": "assistant", "content": "🙂 𠀀 𝔘𝔫𝔦 👩‍💻"}],
                 system="Answer with emoji 🎉 when you can."),
)
TOOL_SUITE = (
    Conversation("tool definitions, call and result", [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "content": "{\"temperature_c\": 21, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 21 °C and clear in Paris."}], tools=[WEATHER_TOOL]),
)


# tokenizer parity: HF ids must equal llama.cpp's ids for the built GGUF
TOKENIZER_CORPUS = (
    "The quick brown fox jumps over the lazy dog. It's 12:45, isn't it?",
    "大型语言模型的微调需要高质量的数据。你好，世界！",
    "def add(a: int, b: int) -> int:\n    return a + b  # 12345\n\tindent\r\n",
    "Emoji: 👍🏽 🇯🇵 👩‍💻 ✨ and symbols: ≥ ≤ ∑ π ½",
    "  leading spaces, trailing spaces   \n\n\nnewlines",
)


def tokenizer_mismatches(hf_ids: Callable[[str], list[int]], gguf_ids: Callable[[list[str]], list[list[int]]],
                         special_tokens: list[str]) -> list[str]:
    """Texts whose HF token ids (`hf_ids(text)`, no special tokens added) differ from llama.cpp's
    (`gguf_ids(texts)`), with both id lists."""
    texts = list(TOKENIZER_CORPUS) + ["".join(special_tokens) + " after specials " + "".join(special_tokens)]
    expected = gguf_ids(texts)
    problems = []
    for text, theirs in zip(texts, expected, strict=True):
        ours = hf_ids(text)
        if ours != theirs:
            problems.append(f"{text[:40]!r}: transformers {ours[:16]}... llama.cpp {theirs[:16]}...")
    return problems


@dataclass(frozen=True)
class Result:
    conversation: str
    renderings: dict[str, str]

    @property
    def agrees(self) -> bool:
        return len(set(self.renderings.values())) == 1

    def diff(self) -> str:
        (first, reference), *others = self.renderings.items()
        chunks = []
        for name, text in others:
            if text != reference:
                chunks.append("".join(difflib.unified_diff(
                    reference.splitlines(keepends=True), text.splitlines(keepends=True), first, name)))
        return "\n".join(chunks)


def suite(with_tools: bool) -> tuple[Conversation, ...]:
    return SUITE + (TOOL_SUITE if with_tools else ())


def compare(conversations, renderers: dict[str, Callable[[Conversation], str]]) -> list[Result]:
    return [Result(c.name, {name: render(c) for name, render in renderers.items()}) for c in conversations]


# --- renderers: a chat formatter (messages, tools, add_generation_prompt) -> text, per conversation

def conversation_renderer(formatter: Callable[[list, list, bool], str]) -> Callable[[Conversation], str]:
    """A whole conversation through a chat formatter, as training sees it (no generation prompt)."""
    def render(conversation: Conversation) -> str:
        return formatter(conversation.openai_messages(), conversation.tools, False)
    return render


# --- Ollama: the generation prompt its server builds, and where the answer stops -----------------

@dataclass(frozen=True)
class OllamaCheck:
    conversation: str
    expected: str               # the trained format's prompt for the last answer (GGUF chat template)
    ollama: str                 # what Ollama's server builds from the Modelfile for the same request
    stop_problem: str | None    # why the trained answer would not end at a Modelfile stop, if it would not

    @property
    def status(self) -> str:
        if self.stop_problem or canonical_json(self.ollama) != canonical_json(self.expected):
            return "DIFFER"
        return "agree" if self.ollama == self.expected else "agree up to JSON formatting"

    def diff(self) -> str:
        text = "".join(difflib.unified_diff(self.expected.splitlines(keepends=True),
                                            self.ollama.splitlines(keepends=True), "trained format", "Ollama"))
        return "\n".join(part for part in (text, self.stop_problem) if part)


def ollama_checks(conversations, render_gguf: Callable[[list, list, bool], str],
                  render_ollama: Callable[[list[dict]], list[str]], fewshot: list[dict[str, str]],
                  stops: list[str]) -> list[OllamaCheck]:
    """Each conversation up to its last answer, rendered as the trained format's generation prompt
    and as Ollama's; the full trained conversation must then end the answer at one of `stops`.

    Ollama puts the Modelfile's MESSAGE turns before the request (after its system prompt) and the
    Modelfile SYSTEM in front when the request has none, which the reference mirrors."""
    cases, requests = [], []
    for conversation in conversations:
        system = [{"role": "system", "content": conversation.system}] if conversation.system is not None else []
        history, answer = last_answer(conversation.messages)
        cases.append((conversation, system + fewshot + history, answer))
        requests.append({"messages": system + history, "tools": conversation.tools or None})
    prompts = render_ollama(requests)
    checks = []
    for (conversation, messages, answer), ollama in zip(cases, prompts, strict=True):
        expected, rendered, stop = answer_span(render_gguf, messages, answer, conversation.tools, stops)
        checks.append(OllamaCheck(conversation.name, expected, ollama, _stop_problem(rendered, stop, answer, stops)))
    return checks


def _stop_problem(rendered: str | None, stop: str | None, answer: dict[str, Any], stops: list[str]) -> str | None:
    if rendered is None:
        return "the chat template renders the history differently with and without the answer"
    if stop is None:
        return (f"the trained answer {rendered[:80]!r} ends with none of the Modelfile stops {stops}: "
                f"Ollama would not stop")
    text = rendered[:-len(stop)]
    content = answer.get("content") or ""
    if content and not answer.get("tool_calls") and text != content:
        return f"Ollama would stop at {text[:80]!r}, not after the trained answer {content[:80]!r}"
    return None


def canonical_json(text: str) -> str:
    """`text` with every embedded JSON object rewritten with sorted keys and no spaces: Ollama
    re-encodes tool schemas and call arguments with Go's encoding/json (compact, its own field
    order, <>& escaped), which no template can turn back into Python's json.dumps output."""
    decoder = json.JSONDecoder()
    out, index = [], 0
    while index < len(text):
        if text[index] == "{":
            try:
                value, end = decoder.raw_decode(text, index)
            except json.JSONDecodeError:
                value, end = None, index
            if isinstance(value, dict):
                out.append(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
                index = end
                continue
        out.append(text[index])
        index += 1
    return "".join(out)


def ollama_report(checks: list[OllamaCheck]) -> str:
    lines = ["# Ollama prompt parity", "",
             "Each conversation's generation prompt as Ollama's server builds it (Go text/template, the "
             "Modelfile's TEMPLATE, SYSTEM and MESSAGEs) against the trained chat format.", ""]
    lines += [f"- {check.status}: {check.conversation}" for check in checks]
    for check in checks:
        if check.status != "agree":
            lines += ["", f"## {check.conversation} ({check.status})", "", "```diff", check.diff().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def report(results: list[Result]) -> str:
    lines = ["# Prompt-format parity", ""]
    for result in results:
        lines.append(f"- {'agree' if result.agrees else 'DIFFER'}: {result.conversation} "
                     f"({', '.join(result.renderings)})")
    for result in results:
        if not result.agrees:
            lines += ["", f"## {result.conversation}", "", "```diff", result.diff().rstrip(), "```"]
    return "\n".join(lines) + "\n"
