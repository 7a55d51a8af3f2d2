"""data: read and check the dataset row by row as the kind of data the training method learns from
(dataset/kinds.py), set the held-out rows aside (dataset.holdout; eval uses them, training never
sees them) and write both parts in one plain form that the train and eval stages read."""

from __future__ import annotations

import json

from ..dataset import kinds
from ..dataset.holdout import holdout_indices
from ..errors import DataError
from ..facts import layout
from ..facts.train_methods import ROW_NOUNS, method
from .context import StageContext


def run(ctx: StageContext) -> None:
    config = ctx.cfg.dataset
    fmt = getattr(config.format, "value", config.format)  # a plain string in a stage view
    learner = method(ctx.cfg.train.stage)
    shown = config.path
    rows = []
    for row in kinds.read(ctx.files["dataset"], fmt, learner.data, shown, learner.name):
        rows.append(row)
        if config.max_samples and len(rows) >= config.max_samples:
            break
    if not rows:
        what = "text" if learner.data == "text" else "rows"
        raise DataError(f"{shown}: no {what}. train.stage={learner.name} needs {kinds.DATA_FIELDS[learner.data]}.")
    held = set(holdout_indices(len(rows), config.holdout, config.holdout_seed))
    train = [row for index, row in enumerate(rows) if index not in held]
    heldout = [rows[index] for index in sorted(held)]
    for name, part in ((layout.TRAIN_ROWS, train), (layout.HELDOUT, heldout)):
        (ctx.out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    (ctx.out / layout.SPLIT_RECORD).write_text(json.dumps({"rows": len(rows), "heldout_rows": sorted(held),
                                                            "seed": config.holdout_seed, "kind": learner.data})
                                               + "\n", encoding="utf-8")
    noun = ROW_NOUNS[learner.data]
    ctx.say(f"{len(rows)} {noun} from {shown} ({fmt}, for {learner.name}): {len(train)} to train on, "
            f"{len(heldout)} held out for eval (seed {config.holdout_seed})")


def load(artifact, name: str = layout.TRAIN_ROWS) -> list[dict]:
    """The rows a data artifact wrote: its training part (default) or layout.HELDOUT."""
    text = (artifact / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
