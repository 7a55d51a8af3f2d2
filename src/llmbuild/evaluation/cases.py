"""Held-out conversations -> eval cases: the prompt up to the last answer and the answer span,
both rendered with the GGUF's chat template (which the parity stage proved equal to training)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from ..chat.conversation import answer_span, decode_arguments, last_answer


@dataclass(frozen=True)
class Case:
    prompt: str                  # the user's last message, for reports
    prompt_text: str             # rendered history + generation prompt
    answer_text: str             # the trained answer as rendered, up to and including its end token
    reference: str               # the answer's content (plain answers)
    reference_calls: list[dict[str, Any]]  # the answer's tool calls: [{"name", "arguments"}], or []

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load(heldout: Path, max_rows: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in heldout.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:max_rows]


def build(rows: list[dict[str, Any]], render: Callable[[list, list, bool], str], stops: list[str]) -> list[Case]:
    """`render(messages, tools, add_generation_prompt)` is the chat template; `stops` end an answer."""
    cases = []
    for row in rows:
        tools = row.get("tools") or []
        history, answer = last_answer(row["messages"])
        prompt_text, answer_text, _ = answer_span(render, history, answer, tools, stops)
        if answer_text is None:
            raise ValueError("the chat template renders the history differently with and without the answer")
        user = next((m.get("content") or "" for m in reversed(history) if m["role"] in ("user", "tool")), "")
        calls = [{"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))}
                 for c in answer.get("tool_calls") or []]
        cases.append(Case(user, prompt_text, answer_text, answer.get("content") or "", calls))
    return cases


def _arguments(value: Any) -> Any:
    """Decoded arguments; text that is not JSON stays text (it then matches no parsed answer)."""
    try:
        return decode_arguments(value) or {}
    except ValueError:
        return value
