"""OpenAI-style conversations: the pieces every consumer of a chat needs the same way (a tool
call's arguments, the history before the last answer, the answer as a template renders it)."""

from __future__ import annotations

import json
import re
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


def for_template(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI messages as chat templates take them (transformers' and vLLM's convention): a tool
    call's arguments as an object, not a JSON string."""
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if calls:
            message = {**message, "tool_calls": [
                {**call, "function": {**call["function"], "arguments": decode_arguments(call["function"]["arguments"])}}
                if "function" in call else call for call in calls]}
        out.append(message)
    return out


Render = Callable[[list, list, bool], str]   # (messages, tools, add_generation_prompt) -> text
_MARK = "\u2063ANSWER\u2063"   # an answer's place in a rendering: invisible separators, in no real text


def answer_piece(render: Render, messages: list[dict[str, Any]], index: int, tools: list, prompt: str) -> str:
    """Assistant turn `index` as the model is to write it after `prompt`, its generation prompt.

    Mostly the template's own text of the turn. Some templates write a turn unlike its generation
    prompt continues (Mistral writes the system prompt only into a last user message, DeepSeek-R1
    cuts the thinking off every answer): then the content as given, less what the generation
    prompt already opened (`<think>\\n`; an answer without thinking gets an empty thinking block
    there), and what the template writes after an answer. Raises ValueError when neither works."""
    full = render(messages[:index + 1], tools, False)
    if full.startswith(prompt):
        return full[len(prompt):]
    message = messages[index]
    if message.get("tool_calls"):   # calls as the template writes them, after the thinking the prompt opened
        opened = re.search(r"<think>\s*(</think>\s*)?$", prompt)
        if opened and full.startswith(prompt[:opened.start()]):
            return full[opened.start():]
        raise ValueError(f"the template writes assistant turn {index + 1} (a tool call) differently from how its "
                         f"generation prompt starts it")
    marked = render(messages[:index] + [{**message, "content": _MARK}], tools, False)
    if _MARK not in marked:
        raise ValueError(f"the template does not write the content of assistant turn {index + 1}")
    after = marked.split(_MARK, 1)[1]
    content = message.get("content") or ""
    if prompt.rstrip().endswith("<think>") and not content.startswith("<think>"):
        content = "<think>\n\n</think>\n\n" + content
    overlap = next((k for k in range(min(len(content), 64), 0, -1) if prompt.endswith(content[:k])), 0)
    return content[overlap:] + after


def turn_pieces(render: Render, messages: list[dict[str, Any]], tools: list,
                stops: list[str]) -> list[list[tuple[str, str]]]:
    """A conversation as `render` writes it, cut into (prompt, answer) pieces for training: each
    answer is an assistant turn as the model is to write it (`answer_piece`), each prompt what
    precedes it. One sample, whose pieces concatenate to the whole conversation, when the template
    writes every turn the same however the conversation goes on; else one sample per assistant
    turn (templates that drop earlier turns' thinking), each with its history as the template
    writes it for that turn. Every answer ends at one of `stops`, so the model learns to stop: a
    stop the template writes at the start of the next turn (GLM's <|user|>) moves into the answer,
    and an answer with none gets the first one."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    prompts = [render(messages[:i], tools, True) for i in turns]
    answers = [answer_piece(render, messages, i, tools, p) for i, p in zip(turns, prompts, strict=True)]
    pieces, done = [], ""
    for prompt, answer in zip(prompts, answers, strict=True):
        if not prompt.startswith(done):   # the history is written differently once the turn follows
            return [[(prompt, _stopped(answer, "", stops)[0])] for prompt, answer in zip(prompts, answers, strict=True)]
        pieces.append([prompt[len(done):], answer])
        done = prompt + answer
    for this, following in zip(pieces, pieces[1:] + [None], strict=True):
        this[1], rest = _stopped(this[1], following[0] if following else "", stops)
        if following:
            following[0] = rest
    return [[(prompt, answer) for prompt, answer in pieces]]


def _stopped(answer: str, following: str, stops: list[str]) -> tuple[str, str]:
    """(answer ending at a stop, the rest of the text that follows it)."""
    if not stops or any(stop in answer for stop in stops):
        return answer, following
    moved = next((stop for stop in stops if following.startswith(stop)), None)
    if moved:
        return answer + moved, following[len(moved):]
    return answer + stops[0], following


def answer_span(render: Render, history: list, answer: dict[str, Any], tools: list,
                stops: list[str]) -> tuple[str, str | None, str | None]:
    """(the generation prompt for `answer`, the answer as the model is trained to write it, up to
    and including its stop, that stop). The answer is None when the template cannot write it
    (`answer_piece`)."""
    prompt = render(history, tools, True)
    try:
        rest, _ = _stopped(answer_piece(render, [*history, answer], len(history), tools, prompt), "", stops)
    except ValueError:
        return prompt, None, None
    found = [(rest.find(stop), stop) for stop in stops if stop and stop in rest]
    if not found:
        return prompt, rest, None
    at, stop = min(found)
    return prompt, rest[:at + len(stop)], stop
