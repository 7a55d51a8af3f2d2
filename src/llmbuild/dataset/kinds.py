"""A dataset file -> checked rows of the kind a training method learns from (facts/train_methods.py),
each in one plain form that the train and eval stages read:

- chat:     {"messages": [...], "tools": [...]}: OpenAI messages ending with the assistant's answer
- text:     {"text": "..."}: one document
- pairs:    {"messages": [...], "tools": [...], "chosen": {assistant message}, "rejected": {...}}:
            the prompt ends with the user's (or a tool's) turn
- labelled: {"messages": [...], "tools": [...], "label": true|false}: a chat row whose last answer
            is good (true) or bad

Every row is checked before anything trains; an error names the file, the line and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError
from ..facts.train_methods import CHAT, DATA_FIELDS, LABELLED, PAIRS, TEXT
from . import rows as chat_rows

ANSWERS = ("chosen", "rejected")
LABEL_FIELDS = ("label", "kto_tag")   # KTO's label, under its usual name or LLaMA-Factory's


def read(path: Path, fmt: str, kind: str, shown: str, stage: str) -> Iterator[dict[str, Any]]:
    """The rows of `path` (dataset.format `fmt`, shown to users as `shown`) as `kind` rows, for a
    stage whose train.stage is `stage` (named in messages)."""
    if kind == TEXT:
        yield from _texts(path, shown)
        return
    for row in chat_rows.read_rows(path):
        place = f"{shown}:{row.line}"
        if not isinstance(row.data, dict):
            raise DataError(f"{place}: each row must be a JSON object, got {type(row.data).__name__}")
        if kind == CHAT:
            _no_preference_fields(row.data, place, stage)
            yield _chat(row.data, fmt, place)
        elif kind == PAIRS:
            yield _pair(row.data, fmt, place, stage)
        elif kind == LABELLED:
            yield _labelled(row.data, fmt, place, stage)
        else:
            raise ValueError(kind)


def _chat(data: dict, fmt: str, place: str) -> dict[str, Any]:
    shape = "alpaca" if fmt == "alpaca" else "sharegpt"
    return chat_rows.to_openai(_checked(data, fmt, place), shape)


def _checked(data: dict, fmt: str, place: str) -> dict[str, Any]:
    """The row in LLaMA-Factory's layout, checked by dataset/rows.py (its messages name `place`)."""
    where, line = place.rsplit(":", 1)
    return chat_rows.to_llamafactory(chat_rows.Row(int(line), data), fmt, where)


def _no_preference_fields(data: dict, place: str, stage: str) -> None:
    found = [f for f in (*ANSWERS, *LABEL_FIELDS) if f in data]
    if found:
        wanted = "train.stage=kto" if found[0] in LABEL_FIELDS else "train.stage=dpo (or orpo, simpo)"
        raise DataError(f"{place}: the row has {', '.join(repr(f) for f in found)}, which train.stage={stage} does "
                        f"not use: this looks like preference data. Train it with {wanted}, or drop the field.")


def _pair(data: dict, fmt: str, place: str, stage: str) -> dict[str, Any]:
    missing = [f for f in ANSWERS if f not in data]
    if missing:
        raise DataError(f"{place}: train.stage={stage} learns from {DATA_FIELDS[PAIRS]}; this row has no "
                        f"{' and no '.join(repr(f) for f in missing)}" +
                        (" (it looks like a chat row: train it with train.stage=sft)" if len(missing) == 2 else ""))
    prompt_fields = {k: v for k, v in data.items() if k not in ANSWERS}
    answers = []
    for field in ANSWERS:
        full = _with_answer(prompt_fields, data[field], fmt, place, field)
        answers.append(_split_last_answer(_chat(full, fmt, place), place))
    (prompt, tools, chosen), (prompt2, _, rejected) = answers
    if prompt != prompt2:   # cannot happen for one prompt; kept as a guard on _with_answer
        raise DataError(f"{place}: chosen and rejected answer different prompts")
    if chosen == rejected:
        raise DataError(f"{place}: 'chosen' and 'rejected' are the same answer; the pair teaches nothing. Fix or "
                        f"drop the row.")
    return {"messages": prompt, "tools": tools, "chosen": chosen, "rejected": rejected}


def _with_answer(prompt: dict, answer: Any, fmt: str, place: str, field: str) -> dict:
    """A chat row of `fmt`: the pair's prompt, then `answer` as the assistant's last turn."""
    if fmt == "alpaca":
        if not isinstance(answer, str):
            raise DataError(f"{place}: '{field}' must be the answer's text (a string) in alpaca rows")
        return {**prompt, "output": answer}
    if fmt == "sharegpt":
        turns = prompt.get("conversations")
        if not isinstance(turns, list):
            raise DataError(f"{place}: sharegpt preference rows need a 'conversations' list that ends with the "
                            f"human's turn")
        message = answer if isinstance(answer, dict) else {"from": "gpt", "value": answer}
        if message.get("from", "gpt") != "gpt" or not isinstance(message.get("value"), str):
            raise DataError(f"{place}: '{field}' must be a string or {{\"from\": \"gpt\", \"value\": ...}}")
        return {**prompt, "conversations": [*turns, {"from": "gpt", "value": message["value"]}]}
    messages = prompt.get("messages", prompt.get("prompt"))
    if isinstance(messages, str):   # TRL's standard form: the prompt as text
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, list):
        raise DataError(f"{place}: OpenAI-format preference rows need 'messages' (or 'prompt'): the conversation "
                        f"up to the user's last turn")
    if isinstance(answer, list) and len(answer) == 1:   # TRL's conversational form: [{"role": "assistant", ...}]
        answer = answer[0]
    message = answer if isinstance(answer, dict) else {"role": "assistant", "content": answer}
    if message.get("role", "assistant") != "assistant" or not isinstance(message.get("content"), str):
        raise DataError(f"{place}: '{field}' must be a string or {{\"role\": \"assistant\", \"content\": ...}}")
    rest = {k: v for k, v in prompt.items() if k not in ("messages", "prompt")}
    return {**rest, "messages": [*messages, {"role": "assistant", "content": message["content"]}]}


def _split_last_answer(row: dict[str, Any], place: str) -> tuple[list, list, dict]:
    *prompt, answer = row["messages"]
    if answer["role"] != "assistant" or (prompt and prompt[-1]["role"] == "assistant"):
        raise DataError(f"{place}: the prompt must end with the user's turn, before the chosen/rejected answers")
    return prompt, row["tools"], {"role": "assistant", "content": answer["content"]}


def _labelled(data: dict, fmt: str, place: str, stage: str) -> dict[str, Any]:
    fields = [f for f in LABEL_FIELDS if f in data]
    if not fields:
        extra = " (it has chosen/rejected answers: train it with train.stage=dpo)" if "chosen" in data else ""
        raise DataError(f"{place}: train.stage={stage} learns from {DATA_FIELDS[LABELLED]}; this row has no "
                        f"'label'{extra}")
    label = data[fields[0]]
    if not isinstance(label, bool):
        raise DataError(f"{place}: 'label' must be true (a good answer) or false (a bad one), got {label!r}")
    row = _chat({k: v for k, v in data.items() if k not in LABEL_FIELDS}, fmt, place)
    return {**row, "label": label}


def _texts(path: Path, shown: str) -> Iterator[dict[str, Any]]:
    """Documents of a text dataset: JSON/JSONL rows with a 'text' string, or any other file as plain
    text (.txt, .md, ...): blank lines separate documents when it has any, else one per line."""
    if path.is_dir():
        raise DataError(f"{shown} is a folder; dataset.path names the text file itself")
    if path.suffix not in (".json", ".jsonl"):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{shown}: not UTF-8 (at byte {err.start}). Save it as UTF-8.") from None
        blocks = text.replace("\r\n", "\n").split("\n\n")
        documents = [b.strip() for b in blocks] if len(blocks) > 1 else [line.strip() for line in text.splitlines()]
        for document in documents:
            if document:
                yield {"text": document}
        return
    for row in chat_rows.read_rows(path):
        place = f"{shown}:{row.line}"
        if not isinstance(row.data, dict) or not isinstance(row.data.get("text"), str):
            raise DataError(f"{place}: text rows are objects with a 'text' string (the document), e.g. "
                            f"{json.dumps({'text': 'The first document.'})}")
        if row.data["text"].strip():
            yield {"text": row.data["text"]}
