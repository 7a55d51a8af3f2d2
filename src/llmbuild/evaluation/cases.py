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
    generate: bool = True        # answer greedily and score the answer (False: only score answer_text)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Case:
        return cls(**data)


def load(heldout: Path, max_rows: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in heldout.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:max_rows]


def build(rows: list[dict[str, Any]], render: Callable[[list, list, bool], str], stops: list[str]) -> list[Case]:
    """Chat rows (and labelled ones: good answers are generated, bad ones only scored).
    `render(messages, tools, add_generation_prompt)` is the chat template; `stops` end an answer."""
    cases = []
    for row in rows:
        history, answer = last_answer(row["messages"])
        cases.append(_case(render, history, answer, row.get("tools") or [], stops, row.get("label", True)))
    return cases


def build_pairs(rows: list[dict[str, Any]], render: Callable[[list, list, bool], str],
                stops: list[str]) -> list[Case]:
    """Preference rows: every chosen answer (generated and scored), then every rejected one (scored)."""
    chosen = [_case(render, row["messages"], row["chosen"], row.get("tools") or [], stops, True) for row in rows]
    rejected = [_case(render, row["messages"], row["rejected"], row.get("tools") or [], stops, False) for row in rows]
    return chosen + rejected


def build_text(rows: list[dict[str, Any]], bos: str) -> list[Case]:
    """Raw-text rows: each document scored whole after `bos` (the text of the BOS token when the
    model starts every text with one, else ""), nothing generated."""
    return [Case(row["text"][:80], bos, row["text"], "", [], generate=False) for row in rows]


def _case(render, history: list, answer: dict[str, Any], tools: list, stops: list[str], generate: bool) -> Case:
    prompt_text, answer_text, _ = answer_span(render, history, answer, tools, stops)
    if answer_text is None:
        raise ValueError("the chat template renders the history differently with and without the answer")
    user = next((m.get("content") or "" for m in reversed(history) if m["role"] in ("user", "tool")), "")
    calls = [{"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))}
             for c in answer.get("tool_calls") or []]
    return Case(user, prompt_text, answer_text, answer.get("content") or "", calls, generate)


def _arguments(value: Any) -> Any:
    """Decoded arguments; text that is not JSON stays text (it then matches no parsed answer)."""
    try:
        return decode_arguments(value) or {}
    except ValueError:
        return value
