"""Dataset validation: good rows become LLaMA-Factory rows; a bad row names its file and line."""

from __future__ import annotations

import json

import pytest

from llmbuild.dataset import rows as datasets
from llmbuild.errors import DataError


def rows_of(tmp_path, lines, suffix=".jsonl"):
    path = tmp_path / f"d{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n")
    else:
        path.write_text(lines)
    return path, list(datasets.read_rows(path))


def convert(tmp_path, rows, fmt):
    path, read = rows_of(tmp_path, rows)
    return [datasets.to_llamafactory(row, fmt, path.name) for row in read]


def test_openai_tool_calls_become_function_call_and_observation_turns(tmp_path):
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "content": "{\"temp\": 21}"},
            {"role": "assistant", "content": "21 °C."},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    }
    (out,) = convert(tmp_path, [row], "openai")
    assert out["system"] == "Be brief."
    assert [t["from"] for t in out["conversations"]] == ["human", "function_call", "observation", "gpt"]
    assert json.loads(out["conversations"][1]["value"]) == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert json.loads(out["tools"])[0]["function"]["name"] == "get_weather"
    info = datasets.dataset_info("x", "sharegpt", "train.json", [out])
    assert info["x"]["columns"] == {"messages": "conversations", "system": "system", "tools": "tools"}


def test_alpaca_rows_keep_their_fields(tmp_path):
    (out,) = convert(tmp_path, [{"instruction": "Add", "input": "2+2", "output": "4"}], "alpaca")
    assert out == {"instruction": "Add", "input": "2+2", "output": "4"}
    info = datasets.dataset_info("x", "alpaca", "train.json", [out])
    assert "system" not in info["x"]["columns"], "absent columns must not be declared"


def test_sharegpt_system_turn_moves_to_the_system_column(tmp_path):
    row = {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"},
                             {"from": "gpt", "value": "A"}]}
    (out,) = convert(tmp_path, [row], "sharegpt")
    assert out == {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}], "system": "S"}


@pytest.mark.parametrize("row, fmt, message", [
    ({"messages": [{"role": "user", "content": "Q"}]}, "openai", "ends with a user turn"),
    # the role as the file writes it ('user'), not LLaMA-Factory's ('human')
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "user", "content": "Q"}]}, "openai",
     "message 2 has role 'user' where an assistant turn"),
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": " "}]}, "openai", "is empty"),
    ({"messages": [{"role": "robot", "content": "Q"}]}, "openai", "unknown role 'robot'"),
    ({"msgs": []}, "openai", "need a 'messages' list"),
    ({"instruction": "Q"}, "alpaca", "without 'output'"),
    ({"instruction": "Q", "output": "A", "extra": 1}, "alpaca", "unknown alpaca field"),
    ({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": 3}]}, "sharegpt", "must be a string"),
    ({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "tool_calls": [
        {"function": {"name": "f", "arguments": "{oops"}}]}]}, "openai", "not valid JSON"),
])
def test_bad_rows_name_file_line_and_problem(tmp_path, row, fmt, message):
    good = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    sharegpt = {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}
    good = good if fmt == "openai" else ({"instruction": "Q", "output": "A"} if fmt == "alpaca" else sharegpt)
    with pytest.raises(DataError) as err:
        convert(tmp_path, [good, good, row], fmt)
    assert "d.jsonl:3:" in str(err.value) and message in str(err.value)


def test_invalid_json_line_is_reported_with_its_number(tmp_path):
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid JSON"):
        rows_of(tmp_path, [{"a": 1}, "{broken"])


def test_json_array_rows_carry_their_line_numbers(tmp_path):
    text = '[\n  {"instruction": "a", "output": "b"},\n\n  {"instruction": "c", "output": 5}\n]\n'
    path, rows = rows_of(tmp_path, text, suffix=".json")
    assert [r.line for r in rows] == [2, 4]
    with pytest.raises(DataError, match=r"d\.json:4: 'output' must be a string"):
        [datasets.to_llamafactory(r, "alpaca", path.name) for r in rows]


def test_shipped_demo_dataset_is_valid(root):
    path = root / "data" / "demo" / "identity.jsonl"
    rows = [datasets.to_llamafactory(r, "openai", "identity.jsonl") for r in datasets.read_rows(path)]
    assert len(rows) >= 30


def test_a_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"messages": []}\n{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    with pytest.raises(DataError, match=r"latin1.jsonl:2: not UTF-8.*iconv"):
        list(datasets.read_rows(path))


def test_jsonl_lines_in_a_json_file_say_to_rename_it(tmp_path):
    path = tmp_path / "rows.json"
    row = '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}'
    path.write_text(row + "\n" + row + "\n")
    with pytest.raises(DataError, match="that is JSONL, so name it .jsonl"):
        list(datasets.read_rows(path))


def test_a_folder_as_dataset_says_it_is_a_folder(tmp_path, plan_for):
    from llmbuild.errors import ConfigError

    with pytest.raises(ConfigError, match="is a folder"):
        plan_for(f"dataset.path={tmp_path}")
    with pytest.raises(DataError, match="is a folder"):
        list(datasets.read_rows(tmp_path))


def test_a_wrong_role_order_names_the_role_and_message_as_written():
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"},
                        {"role": "user", "content": "u"}]}
    with pytest.raises(DataError, match="message 2 has role 'assistant' where a user or tool turn"):
        datasets.to_llamafactory(datasets.Row(3, row), "openai", "x.jsonl")
