"""doit commands added by llmbuild (registered in pyproject.toml under [tool.doit.plugins.command]).

Each sets how the command line's Hydra overrides are read, then lets doit load dodo.py."""

from __future__ import annotations

import json
from pathlib import Path

from doit.cmd_base import Command, DoitCmdBase
from doit.exceptions import InvalidCommand
from doit.cmd_run import Run

from .. import explain, outputs, review, size_report, sweep_report
from ..adapters import llama_cpp_server, llamafactory, llamafactory_preview
from ..config.compose import compose
from ..config.schema import LlamacppTarget
from ..errors import LlmbuildError
from ..plan.graph import build_plan
from . import overrides, session


class _GraphCommand(Run):
    """A command that runs (part of) the graph generated for its command line's overrides."""

    mode = "build"  # how session.make_plans reads the overrides: "build" refuses sweeps

    def run_graph(self, params, args, tasks=()) -> int:
        session.mode = self.mode
        overrides.add_positional(args)  # Hydra forms without '=' (doit already took the key=value ones)
        return super().execute(params, list(tasks))


class Build(_GraphCommand):
    name = "build"
    doc_purpose = "build the configured model: every stale artifact, nothing else"
    doc_usage = "[group=option] [key=value] [+key=value] [~key] ..."
    doc_description = ("Arguments are Hydra overrides of conf/config.yaml, e.g.\n"
                       "  doit build quant=q8_0\n  doit build recipe=toolcall-qwen7b lora.r=16\n"
                       "doit options such as -n 2 (parallel) come before them.")

    def execute(self, params, args):
        result = self.run_graph(params, args)
        if result == 0:
            for plan in session.plans:
                print()
                print(outputs.summary(plan))
        return result


class Sweep(_GraphCommand):
    name = "sweep"
    doc_purpose = "build every variant of a Hydra sweep in one graph (shared stages run once)"
    doc_usage = "[doit options] KEY=V1,V2 [KEY=range(a,b,step)] [group=glob(pattern)] ..."
    doc_description = ("Several swept keys give their cartesian product, e.g.\n"
                       "  doit sweep lora.r=8,16,32 quant=q4_k_m,q8_0\n"
                       "Stages whose keys coincide are one task: the base model is imported once,\n"
                       "training runs once per lora.r. Add -n 2 to run independent tasks in parallel.")

    mode = "sweep"

    def execute(self, params, args):
        result = self.run_graph(params, args)
        if result == 0 and session.plans:
            table = sweep_report.rows(session.plans)
            folder = sweep_report.write(session.plans[0].store, overrides.current(), table)
            print()
            print(sweep_report.markdown(table), end="")
            print(f"summary: {folder / 'summary.md'} and summary.csv")
            if all("report" in p.nodes for p in session.plans):
                folder = sweep_report.write_reports(session.plans, overrides.current())
                print(f"sweep report: {folder / 'report.html'}")
        return result


class Plan(DoitCmdBase):
    name = "plan"
    doc_purpose = "show what a build or sweep would run, and why, without running anything"
    doc_usage = "[overrides or sweep]"
    doc_description = "Example: doit plan quant=q5_k_m   |   doit plan lora.r=8,16,32 quant=q4_k_m,q8_0"
    cmd_options = ()

    def execute(self, params, args):
        session.mode = "any"
        overrides.add_positional(args)
        return super().execute(params, [])

    def _execute(self):
        print(explain.render_plan(session.plans))
        return 0


class Size(Command):
    name = "size"
    doc_purpose = "estimate parameters, LoRA size, and training and inference memory, without loading the model"
    doc_usage = "[overrides or sweep]"
    doc_description = ("Example: doit size model=qwen2.5-7b-instruct lora=qv   |   doit size train.gpu_memory_gib=24\n"
                       "The shape comes from model.path (config.json or the GGUF header), the built base model, or\n"
                       "model.shape; the dataset need not be there yet. With train.gpu_memory_gib set, a training\n"
                       "that does not fit gets seed 000's remedies, each with its estimate.")

    def execute(self, params, args):
        root = _project_root()
        try:  # planned like `doit plan`, but files that are not there yet do not stop it
            plans = session.make_plans(root, overrides.current() + list(args), strict=False)
            print("\n\n".join(size_report.render_plan(plan) for plan in plans))
        except LlmbuildError as err:
            raise InvalidCommand(str(err)) from None
        return 0


def _project_root() -> Path:
    """The folder with conf/config.yaml: here or above (these commands do not load dodo.py)."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "conf" / "config.yaml").is_file() and (folder / "dodo.py").is_file():
            return folder
    raise InvalidCommand("not inside an llmbuild project (no conf/config.yaml and dodo.py here or above)")


def _take(args: list[str], name: str) -> str | None:
    """Remove `name=value` from the override list and return the value."""
    for item in list(args):
        if item.startswith(f"{name}="):
            args.remove(item)
            return item.split("=", 1)[1]
    return None


class Diff(Command):
    name = "diff"
    doc_purpose = "compare two resolved configurations: changed keys and the stages they rebuild"
    doc_usage = "[recipe=A] [overrides] [other=B | base=GIT-REV] [format=md|json]"
    doc_description = ("  doit diff recipe=demo other=toolcall-qwen7b   two recipes\n"
                       "  doit diff recipe=demo lora.r=16                 the recipe against overrides\n"
                       "  doit diff recipe=demo base=main                 the same recipe at a git revision\n"
                       "Markdown is ready for a pull-request comment; format=json for tools.")

    @staticmethod
    def _plan(root: Path, args: list[str], revision: str | None):
        store = f"store={root / 'build'}"  # shares the digest cache; nothing is built
        if revision is None:
            return build_plan(compose(root, [*args, store]), root, strict=False)
        with review.project_at(root, revision) as old_root:
            return build_plan(compose(old_root, [*args, store]), old_root, strict=False)

    def execute(self, params, args):
        root = _project_root()
        given = overrides.current() + list(args)
        other, revision, fmt = _take(given, "other"), _take(given, "base"), _take(given, "format") or "md"
        recipe_args = [a for a in given if a.startswith(("recipe=", "recipes="))]
        rest = [a for a in given if a not in recipe_args]
        if other and revision:
            raise InvalidCommand("give either other=RECIPE or base=GIT-REVISION, not both")
        if revision:  # the same overrides, then and now
            sides = ((given, revision), (given, None))
        elif other:   # two recipes under the same overrides
            sides = ((given, None), ([*rest, f"recipe={other}"], None))
        else:         # the recipe as committed against the recipe plus overrides
            sides = ((recipe_args, None), (given, None))
        try:
            before, after = (self._plan(root, args_, rev) for args_, rev in sides)
        except LlmbuildError as err:
            raise InvalidCommand(str(err)) from None
        labels = tuple((" ".join(args_) or "(defaults)") + (f" @ {rev}" if rev else "") for args_, rev in sides)
        document = review.diff_document(before, after, labels)
        if fmt == "json":
            print(json.dumps(document, indent=2, ensure_ascii=False, default=str))
        elif fmt == "md":
            print(review.diff_markdown(document), end="")
        else:
            raise InvalidCommand(f"format={fmt!r}: use md or json")
        return 0


class Lock(Command):
    name = "lock"
    doc_purpose = "write recipes/NAME.lock.yaml: resolved config, stage keys and tool versions"
    doc_usage = "recipe=NAME"
    doc_description = ("Commit the lock with the recipe: a change to the recipe, a shared config group,\n"
                       "a template or a tool version then shows in the pull request. pytest fails on a\n"
                       "stale lock.")

    def execute(self, params, args):
        root = _project_root()
        given = overrides.current() + list(args)
        recipe = _take(given, "recipe") or _take(given, "recipes")
        if not recipe or given:
            raise InvalidCommand("usage: doit lock recipe=NAME (a lock describes the recipe as committed: "
                                     "put other settings into the recipe)")
        try:
            plan = review.plan_recipe(root, recipe, root / "build")
        except LlmbuildError as err:
            raise InvalidCommand(str(err)) from None
        path = review.lock_path(root, recipe)
        path.write_text(review.lock_text(plan), encoding="utf-8")
        print(f"wrote {path.relative_to(root)}")
        return 0


class Serve(_GraphCommand):
    name = "serve"
    doc_purpose = "build the configured model if needed, then serve its GGUF over an OpenAI-compatible API"
    doc_usage = "[overrides]"
    doc_description = ("Starts llama-cpp-python's server on loopback (target.llamacpp.host/port, default\n"
                       "127.0.0.1:8080) with the quantized GGUF and its own chat template, e.g.\n"
                       "  doit serve quant=q8_0 target.llamacpp.port=8081\n"
                       "Then: OpenAI(base_url='http://127.0.0.1:8080/v1', api_key='none').")

    def execute(self, params, args):
        result = self.run_graph(params, args)
        if result != 0 or not session.plans:
            return result
        (plan,) = session.plans
        settings = plan.composed.cfg.target.llamacpp or LlamacppTarget()
        alias = settings.model_alias or outputs.ollama_name(plan)
        gguf = outputs.quantized_gguf(plan)
        print(f"\nserving {gguf.name} as model '{alias}' on http://{settings.host}:{settings.port}/v1 (Ctrl-C stops)")
        return llama_cpp_server.serve(llama_cpp_server.command(
            gguf, alias, settings.host, settings.port, settings.n_ctx, settings.n_gpu_layers))


class Preview(_GraphCommand):
    name = "preview"
    doc_purpose = "show the first training samples as LLaMA-Factory preprocesses them: ids, text, trained spans"
    doc_usage = "[overrides] [samples=N]"
    doc_description = ("Builds the base model and dataset if needed, then runs LLaMA-Factory's own\n"
                       "preprocessing with this configuration's training arguments. Text between ⟦ ⟧ is\n"
                       "what the model is trained to produce (its labels); the rest is masked.")

    def execute(self, params, args):
        count = overrides.take("samples") or "3"
        if not count.isdigit():
            raise InvalidCommand(f"samples={count!r}: give a number of samples, e.g. samples=5")
        result = self.run_graph(params, args, ["base", "data"])  # the preview needs only these two
        if result != 0 or not session.plans:
            return result
        (plan,) = session.plans
        store = plan.store
        train_args = llamafactory.train_args(plan.composed.cfg, base=str(store / "base" / plan.nodes["base"].key),
                                             dataset_dir=str(store / "data" / plan.nodes["data"].key / "dataset"),
                                             output_dir="adapter")
        print(llamafactory_preview.show(llamafactory_preview.preprocess(train_args, int(count))))
        return 0


class Report(_GraphCommand):
    name = "report"
    doc_purpose = "build what is stale, then point at the report of a build, or write one report for a sweep"
    doc_usage = "[overrides or sweep]"
    doc_description = ("One configuration: its report.md and report.html (written by the report stage).\n"
                       "A sweep, e.g. doit report lora.r=8,16: every variant's report plus one comparing\n"
                       "them, in build/sweeps/<sweep>/.")

    mode = "any"

    def execute(self, params, args):
        result = self.run_graph(params, args)
        if result != 0 or not session.plans:
            return result
        plans = [p for p in session.plans if "report" in p.nodes]
        if not plans:
            raise InvalidCommand("eval.enabled is false, so there is no report; drop that override")
        for plan in plans:
            print(f"{plan.variant}: {outputs.out_dir(plan) / 'report' / 'report.html'}")
        if len(plans) > 1:
            folder = sweep_report.write_reports(plans, overrides.current())
            print(f"sweep report: {folder / 'report.html'} and report.md")
        return 0
