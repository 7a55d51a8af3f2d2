"""data: validate the dataset row by row, set the held-out rows aside (dataset.holdout; eval uses
them, training never sees them) and write the rest, with dataset_info.json, for LLaMA-Factory."""

from __future__ import annotations

import json

from ..dataset import rows as dataset_rows
from ..dataset.holdout import holdout_indices
from ..errors import DataError
from ..facts import layout
from .context import StageContext


def run(ctx: StageContext) -> None:
    config = ctx.cfg.dataset
    fmt = getattr(config.format, "value", config.format)  # a plain string in a stage view
    shown = config.path
    rows = []
    for row in dataset_rows.read_rows(ctx.files["dataset"]):
        rows.append(dataset_rows.to_llamafactory(row, fmt, shown))
        if config.max_samples and len(rows) >= config.max_samples:
            break
    if not rows:
        raise DataError(f"{shown}: no rows. Add at least one conversation.")
    shape = "alpaca" if fmt == "alpaca" else "sharegpt"
    held = set(holdout_indices(len(rows), config.holdout, config.holdout_seed))
    train = [row for index, row in enumerate(rows) if index not in held]
    heldout = [dataset_rows.to_openai(rows[index], shape) for index in sorted(held)]
    folder = ctx.out / layout.DATASET_DIR
    folder.mkdir()
    (folder / layout.TRAIN_FILE).write_text(json.dumps(train, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    info = dataset_rows.dataset_info(config.name, shape, layout.TRAIN_FILE, train)
    (folder / layout.DATASET_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (ctx.out / layout.HELDOUT).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in heldout),
                                          encoding="utf-8")
    (ctx.out / layout.SPLIT_RECORD).write_text(json.dumps({"rows": len(rows), "heldout_rows": sorted(held),
                                                            "seed": config.holdout_seed}) + "\n", encoding="utf-8")
    ctx.say(f"{len(rows)} rows from {shown} ({fmt}): {len(train)} -> LLaMA-Factory {shape} dataset "
            f"'{config.name}', {len(heldout)} held out for eval (seed {config.holdout_seed})")
