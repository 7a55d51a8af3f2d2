"""data: validate the dataset row by row and write it, with dataset_info.json, for LLaMA-Factory."""

from __future__ import annotations

import json
from pathlib import Path

from .. import datasets
from ..errors import DataError
from .context import StageContext

FILE_NAME = "train.json"


def run(ctx: StageContext) -> None:
    config = ctx.cfg.dataset
    path = Path(config.path)
    path = path if path.is_absolute() else ctx.root / path
    fmt = config.format.value if hasattr(config.format, "value") else str(config.format)
    shown = config.path
    rows = []
    for row in datasets.read_rows(path):
        rows.append(datasets.to_llamafactory(row, fmt, shown))
        if config.max_samples and len(rows) >= config.max_samples:
            break
    if not rows:
        raise DataError(f"{shown}: no rows. Add at least one conversation.")
    layout = "alpaca" if fmt == "alpaca" else "sharegpt"
    folder = ctx.out / "dataset"
    folder.mkdir()
    (folder / FILE_NAME).write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    info = datasets.dataset_info(config.name, layout, FILE_NAME, rows)
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    ctx.say(f"{len(rows)} rows from {shown} ({fmt}) -> LLaMA-Factory {layout} dataset '{config.name}'")
