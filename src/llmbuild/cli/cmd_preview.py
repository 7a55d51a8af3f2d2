"""`doit preview`: the first training samples as LLaMA-Factory preprocesses them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from doit.exceptions import InvalidCommand

from ..adapters import llamafactory_preview
from ..facts import layout
from ..plan import outputs
from ..stages import train
from . import session
from .cmd_base import GraphCommand
from .tasks import stage_context


class Preview(GraphCommand):
    name = "preview"
    doc_purpose = "show the first training samples as LLaMA-Factory preprocesses them: ids, text, trained spans"
    doc_usage = "[overrides] [samples=N]"
    doc_description = ("Builds the base model and dataset if needed, then runs LLaMA-Factory's own\n"
                       "preprocessing with this configuration's training arguments. Text between ⟦ ⟧ is\n"
                       "what the model is trained to produce (its labels); the rest is masked.")

    def execute(self, params, args):
        given = session.overrides(args)
        count = session.take(given, "samples") or "3"
        if not count.isdigit():
            raise InvalidCommand(f"samples={count!r}: give a number of samples, e.g. samples=5")
        self.hydra_overrides = given
        result = self.run_graph(params, args, ["base", "data"])  # the preview needs only these two
        if result != 0 or not self.plans:
            return result
        (plan,) = self.plans
        with tempfile.TemporaryDirectory(prefix="llmbuild-preview-") as scratch:
            ctx = stage_context(plan, "train", Path(scratch))
            base, data = outputs.artifact(plan, "base"), outputs.artifact(plan, "data")
            samples = Path(scratch) / layout.DATASET_DIR   # as the train stage writes them
            train.write_samples(ctx.cfg, ctx.templates, base, data, samples)
            train_args = train.arguments(ctx.cfg, base=str(base), dataset_dir=str(samples), output_dir=layout.ADAPTER)
            print(llamafactory_preview.show(llamafactory_preview.preprocess(train_args, int(count))))
        return 0
