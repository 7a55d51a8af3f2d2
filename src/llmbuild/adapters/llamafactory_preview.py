"""LLaMA-Factory's own preprocessing of the first training samples: token ids, and which of them
are trained on (labels), exactly as `llamafactory-cli train` will see them, without editing
LLaMA-Factory's trainer to print them."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100  # LLaMA-Factory's label for tokens that are not trained on


@dataclass(frozen=True)
class Sample:
    input_ids: list[int]
    labels: list[int]
    pieces: list[tuple[str, bool]]   # decoded runs of tokens, and whether they are trained on
    part: str = ""                   # for preference data: "chosen" or "rejected"

# LLaMA-Factory's preprocessing stage for its training stage (DPO's pairs are its "rm" layout)
DATASET_STAGE = {"sft": "sft", "pt": "pt", "dpo": "rm", "kto": "kto"}


def preprocess(args: dict[str, Any], count: int) -> list[Sample]:
    """`args`: the training YAML's arguments, with absolute paths."""
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    with tempfile.TemporaryDirectory(prefix="llmbuild-preview-") as scratch:
        run_args = {**args, "output_dir": scratch, "max_samples": count, "report_to": "none",
                    "overwrite_cache": True, "preprocessing_num_workers": None}
        model_args, data_args, training_args, _, _ = get_train_args(run_args)
        tokenizer_module = load_tokenizer(model_args)
        tokenizer = tokenizer_module["tokenizer"]
        template = get_template_and_fix_tokenizer(tokenizer, data_args)
        stage = DATASET_STAGE[args["stage"]]
        dataset = get_dataset(template, model_args, data_args, training_args, stage=stage, **tokenizer_module)
        rows = dataset["train_dataset"]
        samples = []
        for i in range(min(count, len(rows))):
            row = rows[i]
            if stage == "rm":
                samples += [_sample(tokenizer, row[f"{part}_input_ids"], row[f"{part}_labels"], part)
                            for part in ("chosen", "rejected")]
            else:   # pt trains on every token of its packed blocks
                samples.append(_sample(tokenizer, row["input_ids"], row.get("labels", row["input_ids"])))
        return samples


def _sample(tokenizer, input_ids: list[int], labels: list[int], part: str = "") -> Sample:
    pieces: list[tuple[str, bool]] = []
    start = 0
    for index in range(1, len(input_ids) + 1):
        if index == len(input_ids) or (labels[index] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
            text = tokenizer.decode(input_ids[start:index], skip_special_tokens=False)
            pieces.append((text, labels[start] != IGNORE_INDEX))
            start = index
    return Sample(list(input_ids), list(labels), pieces, part)


def show(samples: list[Sample], marks: tuple[str, str] = ("⟦", "⟧")) -> str:
    lines = []
    for number, sample in enumerate(samples, start=1):
        trained = sum(label != IGNORE_INDEX for label in sample.labels)
        part = f" ({sample.part})" if sample.part else ""
        lines += [f"--- sample {number}{part}: {len(sample.input_ids)} tokens, {trained} trained on "
                  f"(between {marks[0]} {marks[1]})",
                  f"input_ids: {sample.input_ids}",
                  "".join(f"{marks[0]}{text}{marks[1]}" if learned else text for text, learned in sample.pieces)]
    return "\n".join(lines)
