"""Task metrics from generated answers: exact match and ROUGE-L for plain answers; for tool calls,
whether the output parses as a call, names the right function and gives the right arguments."""

from __future__ import annotations

import json
import re
from typing import Any

from ..chat.conversation import decode_arguments

_WORD = re.compile(r"\w+", re.UNICODE)
_HERMES_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def normalize(text: str) -> str:
    return " ".join(text.split()).strip()


def exact_match(output: str, reference: str) -> bool:
    return normalize(output) == normalize(reference)


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased words: longest common subsequence against both lengths."""
    a, b = _WORD.findall(output.lower()), _WORD.findall(reference.lower())
    if not a or not b:
        return float(a == b)
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def parse_tool_calls(output: str) -> list[dict[str, Any]] | None:
    """Tool calls in the Qwen/Hermes form (<tool_call>{json}</tool_call>) or as a bare JSON object
    with a name and arguments (Llama 3 style, "parameters" accepted); None if nothing parses."""
    bodies = _HERMES_CALL.findall(output) or [output.strip()]
    calls = []
    for body in bodies:
        try:
            value = json.loads(body)
        except json.JSONDecodeError:
            return None
        for call in value if isinstance(value, list) else [value]:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                return None
            arguments = call.get("arguments", call.get("parameters", {}))
            try:
                arguments = decode_arguments(arguments)
            except ValueError:
                pass  # text that is not JSON stays text: it matches no reference
            calls.append({"name": call["name"], "arguments": arguments})
    return calls or None


def score(outputs: list[str], cases) -> dict[str, Any]:
    """Fractions over the cases they apply to; None where no case applies."""
    plain = [(o, c) for o, c in zip(outputs, cases, strict=True) if not c.reference_calls]
    calls = [(o, c) for o, c in zip(outputs, cases, strict=True) if c.reference_calls]
    result: dict[str, Any] = {"exact_match": None, "rouge_l": None, "tool_call": None}
    if plain:
        result["exact_match"] = sum(exact_match(o, c.reference) for o, c in plain) / len(plain)
        result["rouge_l"] = sum(rouge_l(o, c.reference) for o, c in plain) / len(plain)
    if calls:
        parsed = named = argued = 0
        for output, case in calls:
            got = parse_tool_calls(output)
            if got is None:
                continue
            parsed += 1
            if [g["name"] for g in got] == [r["name"] for r in case.reference_calls]:
                named += 1
                if [g["arguments"] for g in got] == [r["arguments"] for r in case.reference_calls]:
                    argued += 1
        result["tool_call"] = {"parsed": parsed / len(calls), "name": named / len(calls),
                               "arguments": argued / len(calls)}
    return result
