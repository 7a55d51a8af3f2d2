"""OpenAI-style conversations: the pieces every consumer of a chat needs the same way (a tool
call's arguments, the history before the last answer, the answer as a template renders it)."""

from __future__ import annotations

import json
from typing import Any, Callable


def decode_arguments(value: Any) -> Any:
    """A tool call's arguments as an object: OpenAI sends them as a JSON string, Ollama and
    LLaMA-Factory as an object; an empty string means no arguments. Invalid JSON raises
    json.JSONDecodeError (a ValueError): each caller says what that means for its input."""
    if isinstance(value, str):
        return json.loads(value) if value.strip() else {}
    return value if value is not None else {}


def last_answer(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the history before the last assistant message, that message)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last], messages[last]


def answer_span(render: Callable[[list, list, bool], str], history: list, answer: dict[str, Any], tools: list,
                stops: list[str]) -> tuple[str, str | None, str | None]:
    """(the generation prompt for `answer`, the answer as the template renders it up to and
    including its stop, that stop). The answer is None when the template renders the history
    differently once the answer follows; the stop is None when none of `stops` ends the answer."""
    prompt = render(history, tools, True)
    full = render(history + [answer], tools, False)
    if not full.startswith(prompt):
        return prompt, None, None
    rest = full[len(prompt):]
    found = [(rest.find(stop), stop) for stop in stops if stop and stop in rest]
    if not found:
        return prompt, rest, None
    at, stop = min(found)
    return prompt, rest[:at + len(stop)], stop
