"""The bad-input corpus: config values, datasets, models, templates and targets a user gets wrong,
each through the command line on a project whose tiny build is complete. Every one must end with a
non-zero exit, one message naming what is wrong, no traceback, no half-written folder and no
finished artifact of the stage that failed; after all of them the good build is still a no-op.

The command line runs in this process (doit_cli.py: doit's own entry point), as composition failures
need no process of their own; a handful (`PROCESS`) run as `python -m doit` in a process, as a user
types them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import copy_store
from doit_cli import ROOT, Done, doit
from tiny_model import SMOLLM2_GGUF

pytestmark = pytest.mark.slow
PROJECT_PARTS = ("conf", "recipes", "templates", "data", "dodo.py", "pyproject.toml")
PROCESS = {"quant=q4_k_n", "lora.rank=4", "recipe=nope", "=5", "lora.r=8,16"}   # also as real processes


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_build):
    """A copy of the project (its templates may be broken here) with a store seeded with the tiny
    build, and the good build (the tiny build with a vLLM folder too), done."""
    top = tmp_path_factory.mktemp("corpus")
    for part in PROJECT_PARTS:
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy2)(ROOT / part, top / part)
    copy_store(tiny_build.pristine, top / "store")
    good = [*tiny_build.overrides, "target=[ollama,llamacpp,vllm]"]
    done = run(top, good)
    assert done.returncode == 0 and done.ran == ["vllm", "package"], done.tail(3000)
    return top, good


def run(top: Path, overrides: list[str], command: str = "build", process: bool = False) -> Done:
    return doit(command, *overrides, store=top / "store", db=top / "doit.db", cwd=top, ok=None, process=process)


def finished(top: Path) -> set[str]:
    return {str(m.parent.relative_to(top / "store")) for m in (top / "store").glob("*/*/manifest.json")}


def rows(*items) -> str:
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)


GOOD_ROW = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}

CONFIG = [  # overrides, what the message names
    ("prompt.num_ctx=-5", "prompt.num_ctx"), ("prompt.temperature=-1", "prompt.temperature"),
    ("prompt.top_p=0", "prompt.top_p"), ("prompt.top_k=-1", "prompt.top_k"),
    ("prompt.repeat_penalty=0", "prompt.repeat_penalty"), ("prompt.num_predict=0", "prompt.num_predict"),
    ("prompt.template=vicuna", "prompt.template"), ("smoke.n_ctx=0", "smoke.n_ctx"),
    ("smoke.max_tokens=0", "smoke.max_tokens"), ("dataset.max_samples=-1", "dataset.max_samples"),
    ("dataset.holdout=-0.1", "dataset.holdout"), ("dataset.holdout=2.5", "dataset.holdout"),
    ("dataset.format=csv", "dataset.format"), ("train.logging_steps=0", "train.logging_steps"),
    ("train.warmup_ratio=1.5", "train.warmup_ratio"), ("train.learning_rate=0", "train.learning_rate"),
    ("train.per_device_train_batch_size=0", "train.per_device_train_batch_size"),
    ("train.cutoff_len=abc", "train.cutoff_len"), ("train.bf16=maybe", "train.bf16"),
    ("+train.fp16=true", "train.fp16"), ("train.save_steps=0", "train.save_steps"),
    ("quant.type=q9", "quant.type"), ("quant.convert_type=q4_k_m", "quant.convert_type"),
    ("quant.split_max_size=2GB", "quant.split_max_size"), ("quant.nthread=-2", "quant.nthread"),
    ("quant=q4_k_n", "q4_k_n"), ("lora.r=0", "lora.r"), ("lora.rank=4", "lora.r"), ("+lora.foo=1", "lora.foo"),
    ("lora.dropout=1", "lora.dropout"), ("lora.quantization_bit=3", "lora.quantization_bit"),
    ("lora.target=[]", "lora.target"), ("model.trust_remote_code=maybe", "model.trust_remote_code"),
    ("name=has space", "name"), ("recipe=nope", "nope"), ("model=nope", "nope"), ("=5", "'=5' has no key"),
    ("+train.extra.wandb_api_key=x", "train.extra.wandb_api_key"), ("lora.r=8,16", "doit sweep"),
    ("jobs.train_at_once=0", "jobs.train_at_once"),
    ("+train.extra.lora_rank=4", "train.extra.lora_rank"), ("+train.extra.output_dir=x", "train.extra.output_dir"),
    ("+train.extra.model_name_or_path=other", "train.extra.model_name_or_path"),
    ("train.pref_ftx=-1", "train.pref_ftx"), ("train.simpo_gamma=-0.5", "train.simpo_gamma"),
    ("train.kto_chosen_weight=-1", "train.kto_chosen_weight"),
    ("train.kto_rejected_weight=0", "train.kto_rejected_weight"),
    ("train.compile_rounding=kernel", "train.compile_rounding"),
]
TARGETS = [
    ("target.llamacpp.port=99999", "target.llamacpp.port"), ("target.vllm.port=0", "target.vllm.port"),
    ("target.llamacpp.n_ctx=0", "target.llamacpp.n_ctx"), ("target=[nope]", "nope"),
    ("+target.ollama.messages=[{role: bot, content: hi}]", "target.ollama.messages[0].role"),
    ("target.vllm.max_model_len=0", "target.vllm.max_model_len"),
    ("target.vllm.quants=[fp9]", "target.vllm.quants[0]"), ("target.vllm.serve=int4", "target.vllm.serve"),
    ("target.vllm.calibration_samples=0", "target.vllm.calibration_samples"),
]
DATA = [  # file name, content, what the message names
    ("bad.jsonl", rows(GOOD_ROW, "{not json"), "bad.jsonl:2"),
    ("latin.jsonl", b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n', "latin.jsonl:1: not UTF-8"),
    ("lines.json", rows(GOOD_ROW, GOOD_ROW), "name it .jsonl"),
    ("empty.jsonl", "", "no rows"),
    ("list.jsonl", rows(GOOD_ROW, [1, 2]), "list.jsonl:2: each row must be a JSON object"),
    ("nomessages.jsonl", rows(GOOD_ROW, {"msgs": []}), "nomessages.jsonl:2"),
    ("role.jsonl", rows({"messages": [{"role": "robot", "content": "Q"}]}), "unknown role 'robot'"),
    ("order.jsonl", rows({"messages": [{"role": "user", "content": "Q"}, {"role": "user", "content": "Q"}]}),
     "message 2 has role 'user'"),
    ("enduser.jsonl", rows({"messages": [{"role": "user", "content": "Q"}]}), "ends with a user turn"),
    ("emptyanswer.jsonl", rows({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": " "}]}),
     "is empty"),
    ("toolargs.jsonl", rows({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "",
                                           "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}]}),
     "not valid JSON"),
    ("tools.jsonl", rows({**GOOD_ROW, "tools": "not json"}), "'tools' is a string but not JSON"),
    ("system.jsonl", rows({"messages": [{"role": "user", "content": "Q"}, {"role": "system", "content": "S"},
                                        {"role": "assistant", "content": "A"}]}), "may only come first"),
]
MODELS = ["truncated.gguf", "text.gguf", "only-config", "missing", "pkg", "notes.txt"]
TEMPLATES = [  # file under templates/, the broken text, what the message names
    # llmbuild's own ChatML template, which prompt.template=chatml trains with instead of the model's own
    ("chat/chatml.jinja", "{% for message in messages %}{{ message['content'] }", "templates/chat/chatml.jinja"),
    ("ollama/chatml.gotmpl", "{{ range .Messages }}{{ .Content }", "TEMPLATE"),
    ("ollama/chatml.gotmpl", "[% if %]", "templates/ollama/chatml.gotmpl"),
    ("Modelfile.j2", "FROM {{ source }\n", "templates/Modelfile.j2"),
    ("vllm/serve.sh.j2", "{{ command ", "templates/vllm/serve.sh.j2"),
]


def check(top: Path, done: Done, named: str, before: set[str], failed_stage: str | None):
    output = done.output
    assert done.returncode != 0, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    assert named in output, output[-2000:]
    assert not list((top / "store").glob("*/.*.tmp-*")), "no half-written folder"
    new = finished(top) - before
    assert not [p for p in new if failed_stage and p.startswith(failed_stage + "/")], new


@pytest.mark.parametrize("override, named", CONFIG + TARGETS, ids=[c[0] for c in CONFIG + TARGETS])
def test_bad_config_value(project, override, named):
    top, good = project
    before = finished(top)
    check(top, run(top, [*good, override]), named, before, None)
    if override in PROCESS:
        check(top, run(top, [*good, override], process=True), named, before, None)
    assert finished(top) == before, "a config error builds nothing"


@pytest.mark.parametrize("name, content, named", DATA, ids=[d[0] for d in DATA])
def test_bad_dataset(project, tmp_path, name, content, named):
    top, good = project
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = finished(top)
    check(top, run(top, [*good, f"dataset.path={path}", "dataset.max_samples=null"]), named, before, "data")


@pytest.mark.parametrize("case", MODELS)
def test_bad_model(project, tmp_path, case):
    top, good = project
    path = {"truncated.gguf": tmp_path / "truncated.gguf", "text.gguf": tmp_path / "text.gguf",
            "only-config": tmp_path / "only-config", "missing": tmp_path / "missing",
            "notes.txt": tmp_path / "notes.txt"}.get(case)
    if case == "truncated.gguf":
        path.write_bytes(SMOLLM2_GGUF.read_bytes()[:100_000])
    elif case == "text.gguf":
        path.write_text("hello\n")
    elif case == "only-config":
        path.mkdir()
        (path / "config.json").write_text("{}")
    elif case == "notes.txt":
        path.write_text("a model?\n")
    model = "pkg:no_such_package/x.gguf" if case == "pkg" else str(path)
    named = {"pkg": "no_such_package", "missing": "does not exist"}.get(case, case)
    before = finished(top)
    overrides = [o for o in good if not o.startswith("model.path=")] + [f"model.path={model}"]
    check(top, run(top, overrides), named, before, "base")


@pytest.mark.parametrize("relative, broken, named", TEMPLATES, ids=[f"{t[0]}:{t[1][:12]}" for t in TEMPLATES])
def test_broken_template(project, relative, broken, named):
    top, good = project
    path = top / "templates" / relative
    original = path.read_text()
    path.write_text(broken)
    try:
        before = finished(top)
        stage = {"Modelfile.j2": "ollama", "vllm/serve.sh.j2": "vllm"}.get(relative)
        extra = ["prompt.template=chatml"] if relative.startswith("chat/") else []
        check(top, run(top, [*good, *extra]), named, before, stage)
    finally:
        path.write_text(original)


def test_a_broken_config_file_names_its_line(project):
    top, good = project
    path = top / "conf" / "lora" / "default.yaml"
    original = path.read_text()
    path.write_text(original + "r: 16\n")
    try:
        check(top, run(top, good), "conf/lora/default.yaml line", finished(top), None)
    finally:
        path.write_text(original)


def test_the_corpus_is_large_enough():
    assert len(CONFIG) + len(TARGETS) + len(DATA) + len(MODELS) + len(TEMPLATES) + 1 >= 60


def test_after_every_bad_input_the_good_build_is_still_a_no_op(project):
    """Runs last in this module (pytest keeps the order of definition)."""
    top, good = project
    done = run(top, good)
    assert done.returncode == 0 and done.ran == [], done.tail(3000)
