"""data: validate the dataset row by row, set the held-out rows aside (dataset.holdout; eval uses
them, training never sees them) and write the rest, with dataset_info.json, for LLaMA-Factory."""

from __future__ import annotations

import json
from pathlib import Path

from .. import datasets
from ..errors import DataError
from .context import StageContext

FILE_NAME = "train.json"
HELDOUT = "heldout.jsonl"   # OpenAI messages, one conversation per line, beside the dataset folder


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
    held = set(datasets.holdout_indices(len(rows), config.holdout, config.holdout_seed))
    train = [row for index, row in enumerate(rows) if index not in held]
    heldout = [datasets.to_openai(rows[index], layout) for index in sorted(held)]
    folder = ctx.out / "dataset"
    folder.mkdir()
    (folder / FILE_NAME).write_text(json.dumps(train, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    info = datasets.dataset_info(config.name, layout, FILE_NAME, train)
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (ctx.out / HELDOUT).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in heldout), encoding="utf-8")
    (ctx.out / "split.json").write_text(json.dumps({"rows": len(rows), "heldout_rows": sorted(held),
                                                     "seed": config.holdout_seed}) + "\n", encoding="utf-8")
    ctx.say(f"{len(rows)} rows from {shown} ({fmt}): {len(train)} -> LLaMA-Factory {layout} dataset "
            f"'{config.name}', {len(heldout)} held out for eval (seed {config.holdout_seed})")
