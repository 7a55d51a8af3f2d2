"""`doit preview`: the first training samples as LLaMA-Factory preprocesses them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from doit.exceptions import InvalidCommand

from ..adapters import llamafactory_preview
from ..errors import LlmbuildError
from ..facts import layout
from ..stages import train
from . import session
from .cmd_base import GraphCommand, project_root
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
        if not count.isdigit() or int(count) == 0:
            raise InvalidCommand(f"samples={count!r}: give a number of samples of 1 or more, e.g. samples=5")
        self.hydra_overrides = given
        # the preview needs what the (last) training stage reads: the base model and its data, and in a
        # pipeline the earlier stages' merged model it trains on
        try:
            planned = session.make_plans(project_root(), given, session.SINGLE)
        except LlmbuildError as err:
            raise InvalidCommand(str(err)) from None
        needed = [planned[0].nodes[slot].task_name for slot in planned[0].nodes["train"].inputs.values()]
        result = self.run_graph(params, args, needed)
        if result != 0 or not self.plans:
            return result
        (plan,) = self.plans
        with tempfile.TemporaryDirectory(prefix="llmbuild-preview-") as scratch:
            ctx = stage_context(plan, "train", Path(scratch))
            base, data = ctx.inputs["base"], ctx.inputs["data"]
            samples = Path(scratch) / layout.DATASET_DIR   # as the train stage writes them
            train.write_samples(ctx.cfg, ctx.templates, ctx.inputs.get("origin", base), data, samples)
            train_args = train.arguments(ctx.cfg, base=str(base), dataset_dir=str(samples), output_dir=layout.ADAPTER)
            print(llamafactory_preview.show(llamafactory_preview.preprocess(train_args, int(count))))
        return 0
