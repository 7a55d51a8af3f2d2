"""Prompt-format parity: one conversation suite rendered by every consumer of the chat template,
compared as text: for each conversation, the prompt the model is given before its last answer.
A difference is the classic post-export failure (a model that loops or babbles because its
serving prompt is not its training prompt), so it fails the build with a diff.

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

# reasoning turns as OpenAI-style clients send them: the thinking inline, before the answer
REASONING_SUITE = (
    Conversation("reasoning turn", [
        {"role": "user", "content": "Is 17 prime?"},
        {"role": "assistant", "content": "<think>\n17 has no divisor from 2 to 4.\n</think>\n\nYes."}]),
    Conversation("reasoning, earlier turn's thinking dropped", [
        {"role": "user", "content": "What is 6 x 7?"},
        {"role": "assistant", "content": "<think>\n6 x 7 = 42.\n</think>\n\n42."},
        {"role": "user", "content": "And half of it?"},
        {"role": "assistant", "content": "<think>\n42 / 2 = 21.\n</think>\n\n21."}]),
)


# tokenizer parity: HF ids must equal llama.cpp's ids for the built GGUF
TOKENIZER_CORPUS = (
    "The quick brown fox jumps over the lazy dog. It's 12:45, isn't it?",
    "大型语言模型的微调需要高质量的数据。你好，世界！",
    "def add(a: int, b: int) -> int:\n    return a + b  # 12345\n\tindent\r\n",
    "Emoji: 👍🏽 🇯🇵 👩‍💻 ✨ and symbols: ≥ ≤ ∑ π ½",
    "  leading spaces, trailing spaces   \n\n\nnewlines",
)


def tokenizer_texts(special_tokens: list[str]) -> list[str]:
    """The texts whose token ids the parity stage compares: the corpus, and the special tokens in a row."""
    return list(TOKENIZER_CORPUS) + ["".join(special_tokens) + " after specials " + "".join(special_tokens)]


def tokenizer_mismatches(hf_ids: Callable[[str], list[int]], expected: list[list[int]],
                         special_tokens: list[str]) -> list[str]:
    """Texts whose HF token ids (`hf_ids(text)`, no special tokens added) differ from llama.cpp's
    (`expected`, for tokenizer_texts(special_tokens)), with both id lists."""
    texts = tokenizer_texts(special_tokens)
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
        return len(set(self.renderings.values())) <= 1

    def diff(self) -> str:
        (first, reference), *others = self.renderings.items()
        chunks = []
        for name, text in others:
            if text != reference:
                chunks.append("".join(difflib.unified_diff(
                    reference.splitlines(keepends=True), text.splitlines(keepends=True), first, name)))
        return "\n".join(chunks)


def suite(with_tools: bool, with_reasoning: bool = False) -> tuple[Conversation, ...]:
    return SUITE + (TOOL_SUITE if with_tools else ()) + (REASONING_SUITE if with_reasoning else ())


def compare(conversations, renderers: dict[str, Callable[[Conversation], str]]) -> list[Result]:
    """Each conversation through every renderer. A conversation the first renderer (the
    reference) rejects (a template's raise_exception: Gemma 2 refuses system messages) is left
    out of the comparison: its Result has no renderings."""
    results = []
    for conversation in conversations:
        (_, reference), *_ = renderers.items()
        try:
            reference(conversation)
        except Exception:   # whatever the template raises, it does not accept this conversation
            results.append(Result(conversation.name, {}))
            continue
        results.append(Result(conversation.name, {name: render(conversation) for name, render in renderers.items()}))
    return results


# --- renderers: a chat formatter (messages, tools, add_generation_prompt) -> text, per conversation

def prompt_renderer(formatter: Callable[[list, list, bool], str],
                    system: str | None = None) -> Callable[[Conversation], str]:
    """The generation prompt of a conversation's last answer through a chat formatter: what the
    model is given before it writes that answer. `system`: the system message of a conversation
    that has none (the reference for a build with prompt.system set)."""
    def render(conversation: Conversation) -> str:
        history, _ = last_answer(conversation.openai_messages())
        if system is not None and not (history and history[0]["role"] == "system"):
            history = [{"role": "system", "content": system}, *history]
        return formatter(history, conversation.tools, True)
    return render


def trained_answer_problems(conversations, pieces_of: Callable[[Conversation], list[tuple[str, str]]],
                            stops: list[str]) -> list[str]:
    """Conversations whose last trained answer (`pieces_of`: the training sample's pieces) does not
    end at one of `stops`: a model trained on them would not learn to stop."""
    problems = []
    for conversation in conversations:
        answer = pieces_of(conversation)[-1][1]
        if stops and not any(stop in answer for stop in stops):
            problems.append(f"{conversation.name}: the trained answer {answer[-60:]!r} ends at none of {stops}")
    return problems


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
                  stops: list[str], trained_stops: list[str] | None = None) -> list[OllamaCheck]:
    """Each conversation up to its last answer, rendered as the trained format's generation prompt
    and as Ollama's; the answer as trained (ending at one of `trained_stops`, default `stops`) must
    then end at one of the Modelfile's `stops` right after its content.

    Ollama puts the Modelfile's MESSAGE turns before the request (after its system prompt) and the
    Modelfile SYSTEM in front when the request has none, which the reference mirrors. A
    conversation the trained template refuses is left out, as training would refuse it."""
    cases, requests = [], []
    for conversation in conversations:
        system = [{"role": "system", "content": conversation.system}] if conversation.system is not None else []
        history, answer = last_answer(conversation.messages)
        try:
            render_gguf(system + fewshot + history + [answer], conversation.tools, False)
        except Exception:   # the trained template does not accept it (Mistral: tool calls without ids)
            continue
        cases.append((conversation, system + fewshot + history, answer))
        requests.append({"messages": system + history, "tools": conversation.tools or None})
    prompts = render_ollama(requests)
    checks = []
    for (conversation, messages, answer), ollama in zip(cases, prompts, strict=True):
        expected, rendered, _ = answer_span(render_gguf, messages, answer, conversation.tools, trained_stops or stops)
        found = sorted((rendered.find(s), s) for s in stops if s and rendered and s in rendered)
        rendered, stop = (rendered[:found[0][0] + len(found[0][1])], found[0][1]) if found else (rendered, None)
        checks.append(OllamaCheck(conversation.name, expected, ollama, _stop_problem(rendered, stop, answer, stops)))
    return checks


def _stop_problem(rendered: str | None, stop: str | None, answer: dict[str, Any], stops: list[str]) -> str | None:
    if rendered is None:
        return "the chat template cannot write the trained answer after its generation prompt"
    if stop is None:
        return (f"the trained answer {rendered[:80]!r} ends with none of the Modelfile stops {stops}: "
                f"Ollama would not stop")
    text = rendered[:-len(stop)]
    content = answer.get("content") or ""
    if content and not answer.get("tool_calls") and _after_thinking(text) != _after_thinking(content):
        return f"Ollama would stop at {text[:80]!r}, not after the trained answer {content[:80]!r}"
    return None


def _after_thinking(text: str) -> str:
    """An answer less its thinking block (templates write an empty one, or open it in the prompt)."""
    return text.split("</think>", 1)[1].lstrip("\n") if "</think>" in text else text


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
        status = "agree" if result.agrees else "DIFFER"
        lines.append(f"- {status}: {result.conversation} ({', '.join(result.renderings)})" if result.renderings
                     else f"- skipped: {result.conversation} (the template rejects it)")
    for result in results:
        if not result.agrees:
            lines += ["", f"## {result.conversation}", "", "```diff", result.diff().rstrip(), "```"]
    return "\n".join(lines) + "\n"
