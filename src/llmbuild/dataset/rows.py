"""Read and validate chat datasets (alpaca, sharegpt, OpenAI messages), JSON or JSONL.

Every row is checked before anything trains; an error names the file, the line and the fix.
OpenAI-style rows (tool_calls, role "tool") become LLaMA-Factory's sharegpt layout
(function_call / observation turns), which LLaMA-Factory's templates then format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..chat.conversation import decode_arguments
from ..errors import DataError

USER_SIDE = ("human", "observation")       # LLaMA-Factory: odd turns
ASSISTANT_SIDE = ("gpt", "function_call")  # LLaMA-Factory: even turns
OPENAI_ROLES = {"user": "human", "assistant": "gpt", "tool": "observation", "function": "observation"}


@dataclass(frozen=True)
class Row:
    line: int
    data: Any


def read_rows(path: Path) -> Iterator[Row]:
    """JSONL: one object per line. JSON: an array of objects (line numbers of each element)."""
    if path.is_dir():
        raise DataError(f"{path} is a folder; dataset.path names the JSON or JSONL file itself")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 (byte {data[err.start]:#04x} at offset {err.start}). "
                        f"Save the file as UTF-8, e.g. iconv -f latin1 -t utf-8.") from None
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield Row(number, json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: not valid JSON ({err.msg}, column {err.colno}). "
                                f"JSONL needs one complete JSON object per line.") from None
        return
    decoder = json.JSONDecoder()
    start = len(text) - len(text.lstrip())
    if not text[start:start + 1] == "[":
        looks_jsonl = text[start:start + 1] == "{" and "\n{" in text.strip()
        hint = ("it holds one object per line: that is JSONL, so name it .jsonl" if looks_jsonl
                else "use .jsonl for one object per line")
        raise DataError(f"{path}: a .json dataset must be an array of objects; {hint}")
    position = start + 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text):
            raise DataError(f"{path}: the JSON array is not closed with ']'")
        if text[position] == "]":
            return
        line = text.count("\n", 0, position) + 1
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno})") from None
        yield Row(line, value)


def to_llamafactory(row: Row, fmt: str, where: str) -> dict[str, Any]:
    """Validate one row and return it in the layout LLaMA-Factory reads for `fmt`."""
    place = f"{where}:{row.line}"
    if not isinstance(row.data, dict):
        raise DataError(f"{place}: each row must be a JSON object, got {type(row.data).__name__}")
    if fmt == "alpaca":
        return _alpaca(row.data, place)
    if fmt == "sharegpt":
        return _sharegpt(row.data, place)
    return _openai(row.data, place)


def _text(value: Any, place: str, what: str, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise DataError(f"{place}: {what} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataError(f"{place}: {what} is empty; the model would learn to answer nothing. "
                        f"Fill it in or drop the row.")
    return value


def _alpaca(data: dict, place: str) -> dict:
    unknown = set(data) - {"instruction", "input", "output", "system", "history"}
    if unknown:
        raise DataError(f"{place}: unknown alpaca field(s) {sorted(unknown)}; alpaca rows have instruction, input, "
                        f"output, system, history")
    for field in ("instruction", "output"):
        if field not in data:
            raise DataError(f"{place}: alpaca row without '{field}'")
    row = {"instruction": _text(data["instruction"], place, "'instruction'", allow_empty=False),
           "input": _text(data.get("input", ""), place, "'input'"),
           "output": _text(data["output"], place, "'output'", allow_empty=False)}
    if "system" in data:
        row["system"] = _text(data["system"], place, "'system'")
    history = data.get("history", [])
    def is_pair(pair) -> bool:
        return isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)

    if not isinstance(history, list) or not all(is_pair(pair) for pair in history):
        raise DataError(f"{place}: 'history' must be a list of [instruction, response] string pairs")
    if history:
        row["history"] = history
    return row


def _tools(value: Any, place: str) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise DataError(f"{place}: 'tools' is a string but not JSON; give a list of function definitions") from None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise DataError(f"{place}: 'tools' must be a list of function definitions (objects)")
    for tool in value:
        function = tool.get("function", tool)
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise DataError(f"{place}: every tool needs a 'name' (or 'function': {{'name': ...}})")
    return json.dumps(value, ensure_ascii=False)


def _check_turns(turns: list[dict], place: str, written: list[tuple[int, str]] | None = None) -> None:
    """`written`: per turn, its message number and role as the file has them (when the format's
    roles differ from LLaMA-Factory's), so that a message names what the user wrote."""
    if not turns:
        raise DataError(f"{place}: the conversation has no user/assistant turns")
    for index, turn in enumerate(turns):
        expected = USER_SIDE if index % 2 == 0 else ASSISTANT_SIDE
        if turn["from"] not in expected:
            number, role = written[index] if written else (index + 1, turn["from"])
            side = "a user or tool turn" if index % 2 == 0 else "an assistant turn"
            raise DataError(f"{place}: message {number} has role '{role}' where {side} was expected; "
                            f"turns must alternate user -> assistant (tool results count as user turns)")
    if turns[-1]["from"] not in ASSISTANT_SIDE:
        raise DataError(f"{place}: the conversation ends with a user turn; the last message must be the assistant's "
                        f"answer (it is what the model learns)")


def _sharegpt(data: dict, place: str) -> dict:
    messages = data.get("conversations")
    if not isinstance(messages, list):
        raise DataError(f"{place}: sharegpt rows need a 'conversations' list of {{'from', 'value'}} messages")
    system = data.get("system", "")
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "from" not in message or "value" not in message:
            raise DataError(f"{place}: message {index + 1} must be an object with 'from' and 'value'")
        if message["from"] == "system" and index == 0:
            system = _text(message["value"], place, "the system message")
            continue
        if message["from"] not in USER_SIDE + ASSISTANT_SIDE:
            raise DataError(f"{place}: message {index + 1} has unknown role '{message['from']}'; use human, gpt, "
                            f"function_call, observation (system only first)")
        is_answer = message["from"] in ASSISTANT_SIDE
        turns.append({"from": message["from"],
                      "value": _text(message["value"], place, f"message {index + 1}", allow_empty=not is_answer)})
    _check_turns(turns, place)
    row: dict[str, Any] = {"conversations": turns}
    if system:
        row["system"] = _text(system, place, "'system'")
    if data.get("tools"):
        row["tools"] = _tools(data["tools"], place)
    return row


def _tool_call(call: Any, place: str, index: int) -> dict:
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise DataError(f"{place}: message {index}: each tool call needs a function name")
    try:
        arguments = decode_arguments(function.get("arguments", {}))
    except ValueError:
        raise DataError(f"{place}: message {index}: tool call arguments are not valid JSON: "
                        f"{function.get('arguments')!r}") from None
    return {"name": function["name"], "arguments": arguments}


def _openai(data: dict, place: str) -> dict:
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise DataError(f"{place}: OpenAI-format rows need a 'messages' list of {{'role', 'content'}} messages")
    system = ""
    turns, written = [], []
    for index, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or "role" not in message:
            raise DataError(f"{place}: message {index} must be an object with 'role' and 'content'")
        role = message["role"]
        if role == "system":
            if index != 1:
                raise DataError(f"{place}: message {index}: a system message may only come first")
            system = _text(message.get("content") or "", place, "the system message")
            continue
        if role not in OPENAI_ROLES:
            raise DataError(f"{place}: message {index} has unknown role '{role}'; use system, user, assistant, tool")
        if role == "assistant" and message.get("tool_calls"):
            calls = [_tool_call(c, place, index) for c in message["tool_calls"]]
            content = calls[0] if len(calls) == 1 else calls
            turns.append({"from": "function_call", "value": json.dumps(content, ensure_ascii=False)})
            written.append((index, "assistant"))
            continue
        content = message.get("content")
        written.append((index, role))
        turns.append({"from": OPENAI_ROLES[role],
                      "value": _text(content, place, f"message {index} content", allow_empty=role != "assistant")})
    _check_turns(turns, place, written)
    row: dict[str, Any] = {"conversations": turns}
    if system:
        row["system"] = system
    if data.get("tools"):
        row["tools"] = _tools(data["tools"], place)
    return row


def to_openai(row: dict[str, Any], layout: str) -> dict[str, Any]:
    """A row in LLaMA-Factory's layout (as `to_llamafactory` wrote it) -> OpenAI messages and tools,
    the form chat templates take; alpaca's instruction and input are joined as LLaMA-Factory does."""
    messages: list[dict[str, Any]] = []
    if row.get("system"):
        messages.append({"role": "system", "content": row["system"]})
    if layout == "alpaca":
        for instruction, answer in row.get("history", []):
            messages += [{"role": "user", "content": instruction}, {"role": "assistant", "content": answer}]
        query = row["instruction"] + ("\n" + row["input"] if row.get("input") else "")
        messages += [{"role": "user", "content": query}, {"role": "assistant", "content": row["output"]}]
        return {"messages": messages, "tools": []}
    roles = {"human": "user", "gpt": "assistant", "observation": "tool"}
    for turn in row["conversations"]:
        if turn["from"] == "function_call":
            calls = json.loads(turn["value"])
            calls = calls if isinstance(calls, list) else [calls]
            messages.append({"role": "assistant", "content": "", "tool_calls": [
                {"type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
                for c in calls]})
        else:
            messages.append({"role": roles[turn["from"]], "content": turn["value"]})
    return {"messages": messages, "tools": json.loads(row["tools"]) if row.get("tools") else []}


def dataset_info(name: str, fmt: str, file_name: str, rows: list[dict]) -> dict:
    """LLaMA-Factory's dataset_info.json entry for what `to_llamafactory` wrote. Optional columns
    are declared only when some row has them (LLaMA-Factory fails on a declared, absent column)."""
    present = set().union(*(row.keys() for row in rows))
    if fmt == "alpaca":
        columns = {"prompt": "instruction", "query": "input", "response": "output"}
        optional = {"system": "system", "history": "history"}
    else:
        columns = {"messages": "conversations"}
        optional = {"system": "system", "tools": "tools"}
    columns.update({k: v for k, v in optional.items() if v in present})
    return {name: {"file_name": file_name, "formatting": fmt, "columns": columns}}
