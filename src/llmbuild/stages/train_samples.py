"""The data stage's rows -> LLaMA-Factory's training dataset, written by the build's chat template.

Chat, labelled and preference rows are rendered by the model's own template (or llmbuild's) and
cut into (prompt, answer) pieces, so that LLaMA-Factory's "empty" template adds nothing and only
masks the prompts; every answer ends at a stop. Raw text goes in as it is (LLaMA-Factory's pt
stage adds the end-of-text token and packs it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..chat.conversation import turn_pieces
from ..errors import StageError
from ..facts import layout
from ..facts.train_methods import CHAT, LABELLED, PAIRS, TEXT

DATASET = "samples"   # its name in dataset_info.json


def _turns(pieces: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [turn for prompt, answer in pieces for turn in ({"from": "human", "value": prompt},
                                                           {"from": "gpt", "value": answer})]


def _prompt_before_last(pieces: list[tuple[str, str]]) -> str:
    """Everything a sample's last answer follows, as one text."""
    return "".join(p + a for p, a in pieces[:-1]) + pieces[-1][0]


def samples_of(kind: str, rows: list[dict[str, Any]], render: Callable, stops: list[str],
               source: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(samples, their dataset_info.json entry). `source` names the chat template in messages."""
    if kind == TEXT:
        return ([{"text": row["text"]} for row in rows],
                {"file_name": layout.TRAIN_SAMPLES, "formatting": "alpaca", "columns": {"prompt": "text"}})
    samples = []
    for number, row in enumerate(rows, 1):
        try:
            if kind == PAIRS:
                answers = [turn_pieces(render, [*row["messages"], row[f]], row["tools"], stops)[-1]
                           for f in ("chosen", "rejected")]
                prompts = {_prompt_before_last(pieces) for pieces in answers}
                if len(prompts) != 1:
                    raise ValueError("the template writes the prompt differently before the chosen and the "
                                     "rejected answer")
                samples.append({"conversations": [{"from": "human", "value": prompts.pop()}],
                                "chosen": {"from": "gpt", "value": answers[0][-1][1]},
                                "rejected": {"from": "gpt", "value": answers[1][-1][1]}})
                continue
            written = turn_pieces(render, row["messages"], row["tools"], stops)
            if kind == LABELLED:   # KTO judges the last answer: one sample, its history as the prompt
                pieces = written[-1]
                samples.append({"conversations": _turns([(_prompt_before_last(pieces), pieces[-1][1])]),
                                "label": row["label"]})
            elif kind == CHAT:
                samples += [{"conversations": _turns(pieces)} for pieces in written]
            else:
                raise ValueError(f"unknown kind of data {kind!r}")
        except ValueError as err:
            raise StageError(f"training row {number}: {err}; {source} cannot be trained on this conversation "
                             f"as it is") from None
        except Exception as err:   # the template's own raise_exception, or a Jinja error
            raise StageError(f"training row {number}: {source} rejects this conversation: {err}") from None
    columns: dict[str, Any] = {"messages": "conversations"}
    entry: dict[str, Any] = {"file_name": layout.TRAIN_SAMPLES, "formatting": "sharegpt", "columns": columns}
    if kind == PAIRS:
        entry["ranking"] = True
        columns.update(chosen="chosen", rejected="rejected")
    if kind == LABELLED:
        columns["kto_tag"] = "label"
    return samples, entry


def write(samples: list[dict[str, Any]], entry: dict[str, Any], folder: Path) -> None:
    """LLaMA-Factory's dataset folder: the samples and dataset_info.json naming them DATASET."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / layout.TRAIN_SAMPLES).write_text(json.dumps(samples, ensure_ascii=False, indent=1) + "\n",
                                               encoding="utf-8")
    (folder / layout.DATASET_INFO).write_text(json.dumps({DATASET: entry}, indent=2) + "\n", encoding="utf-8")


def texts(samples: Path, count: int | None = None) -> list[str]:
    """The first `count` (None: all) training samples as text, as the chat template wrote them (whole
    conversations, the prompt and chosen answer of a pair, or raw text): what calibrates a quantizer."""
    found = []
    for sample in json.loads(samples.read_text(encoding="utf-8")):
        if "text" in sample:
            found.append(sample["text"])
        else:
            turns = [turn["value"] for turn in sample["conversations"]]
            if "chosen" in sample:
                turns.append(sample["chosen"]["value"])
            found.append("".join(turns))
        if len(found) == count:
            break
    if not found:
        raise StageError(f"{samples}: no training samples to calibrate with")
    return found
