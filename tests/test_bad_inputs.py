"""Bad configuration values: one clear line naming the key and the fix, at composition, before
anything runs (a wrong value never reaches a finished artifact)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from llmbuild.config.compose import compose
from llmbuild.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

CASES = [  # override(s), what the message must name
    (["prompt.num_ctx=-5"], "prompt.num_ctx"),
    (["prompt.temperature=-1"], "prompt.temperature"),
    (["prompt.top_p=0"], "prompt.top_p"),
    (["prompt.top_p=1.5"], "prompt.top_p"),
    (["prompt.top_k=-1"], "prompt.top_k"),
    (["prompt.repeat_penalty=0"], "prompt.repeat_penalty"),
    (["prompt.num_predict=0"], "prompt.num_predict"),
    (["target.llamacpp.port=99999"], "target.llamacpp.port"),
    (["target.llamacpp.port=0"], "target.llamacpp.port"),
    (["target=[vllm]", "target.vllm.port=70000"], "target.vllm.port"),
    (["target.llamacpp.n_ctx=0"], "target.llamacpp.n_ctx"),
    (["smoke.n_ctx=0"], "smoke.n_ctx"),
    (["smoke.max_tokens=0"], "smoke.max_tokens"),
    (["dataset.max_samples=-1"], "dataset.max_samples"),
    (["dataset.max_samples=0"], "dataset.max_samples"),
    (["dataset.holdout=-0.1"], "dataset.holdout"),
    (["train.logging_steps=0"], "train.logging_steps"),
    (["train.save_steps=0"], "train.save_steps"),
    (["train.warmup_steps=-1"], "train.warmup_steps"),
    (["train.weight_decay=-0.1"], "train.weight_decay"),
    (["train.max_grad_norm=-1"], "train.max_grad_norm"),
    (["train.per_device_train_batch_size=0"], "train.per_device_train_batch_size"),
    (["train.cutoff_len=0"], "train.cutoff_len"),
    (["train.learning_rate=0"], "train.learning_rate"),
    (["train.gpu_memory_gib=0"], "train.gpu_memory_gib"),
    (["quant.nthread=-2"], "quant.nthread"),
    (["eval.n_gpu_layers=-3"], "eval.n_gpu_layers"),
    (["eval.recommend_kld=0"], "eval.recommend_kld"),
    (["eval.max_rows=0"], "eval.max_rows"),
    (["lora.r=0"], "lora.r"),
    (["lora.dropout=1"], "lora.dropout"),
    (["lora.quantization_bit=3"], "lora.quantization_bit"),
    (["name=has space"], "name"),
    (["+lora.foo=1"], "lora.foo"),
    (["+lora.rank=4"], "lora.r"),
    (["+prompt.temprature=1"], "prompt.temperature"),
    (["+train.extra.wandb_api_key=abc"], "train.extra.wandb_api_key"),
    (["+target.ollama.messages=[{role: bot, content: hi}]"], "target.ollama.messages[0].role"),
    (["quant.type=q9"], "quant.type"),
    (["eval.quants=[q9_9]"], "eval.quants[0]"),
    (["model.chat_format=vicuna"], "model.chat_format"),
]


@pytest.mark.parametrize("overrides, named", CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_bad_value_is_one_line_naming_the_key(tmp_path, overrides, named):
    with pytest.raises(ConfigError) as err:
        compose(ROOT, [f"store={tmp_path}", *overrides])
    message = str(err.value)
    assert named in message and "\n" not in message.strip(), message


def test_a_value_given_on_the_command_line_is_blamed_on_the_command_line(tmp_path):
    with pytest.raises(ConfigError, match="command-line override 'eval.quants=\\[q9_9\\]'"):
        compose(ROOT, [f"store={tmp_path}", "eval.quants=[q9_9]"])


def test_a_system_prompt_no_modelfile_quoting_holds_is_refused_before_training(tmp_path):
    """It used to be found after 98 s of training, by the ollama stage."""
    for part in ("conf", "recipes", "templates", "data"):
        shutil.copytree(ROOT / part, tmp_path / part, symlinks=True)
    recipe = tmp_path / "recipes" / "demo.yaml"
    recipe.write_text(recipe.read_text() + '\nprompt:\n  system: "x\\"\\"\\"\\n\\"y\\" "\n')
    with pytest.raises(ConfigError, match="prompt.system.*an Ollama Modelfile cannot hold it") as err:
        compose(tmp_path)
    assert "recipes/demo.yaml" in str(err.value)
    assert compose(tmp_path, ["target=[llamacpp]"]).cfg.prompt.system.startswith('x"""'), "no Modelfile, no rule"


# --- through the command line: exit code, one message, no traceback, nothing half-built ------------

def run_build(tmp_path, *overrides):
    from doit_cli import doit

    return doit("build", *overrides, store=tmp_path / "store", ok=None)


def bad_models(folder: Path) -> dict[str, Path]:
    from tiny_model import SMOLLM2_GGUF

    (folder / "truncated.gguf").write_bytes(SMOLLM2_GGUF.read_bytes()[:100_000])
    (folder / "text.gguf").write_text("hello\n")
    (folder / "only-config").mkdir()
    (folder / "only-config" / "config.json").write_text("{}")
    return {name: folder / name for name in ("truncated.gguf", "text.gguf", "only-config")}


@pytest.mark.slow   # each runs doit in a process of its own
@pytest.mark.parametrize("case", ["truncated.gguf", "text.gguf", "only-config", "missing", "no key",
                                  "folder as dataset", "latin-1 dataset", "unknown group option", "sweep in build"])
def test_bad_input_on_the_command_line(tmp_path, case, tiny_llama):
    models = bad_models(tmp_path)
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    overrides, named = {
        "truncated.gguf": (["model=local", f"model.path={models['truncated.gguf']}", "model.name=X"], "truncated.gguf"),
        "text.gguf": (["model=local", f"model.path={models['text.gguf']}", "model.name=X"], "text.gguf"),
        "only-config": (["model=local", f"model.path={models['only-config']}", "model.name=X"], "only-config"),
        "missing": (["model=local", f"model.path={tmp_path / 'nowhere'}", "model.name=X"], "nowhere"),
        "no key": (["=5"], "'=5' has no key"),
        "folder as dataset": ([f"dataset.path={tmp_path}"], "is a folder"),
        # the tiny model: the demo's GGUF would be imported first
        "latin-1 dataset": (["model=local", f"model.path={tiny_llama}", "model.name=Tiny", f"dataset.path={latin}",
                             "dataset.holdout=0", "eval.enabled=false"], "latin1.jsonl:1"),
        "unknown group option": (["quant=q4_k_n"], "q4_k_n"),
        "sweep in build": (["lora.r=8,16"], "doit sweep"),
    }[case]
    done = run_build(tmp_path, *overrides)
    output = done.output
    assert done.returncode != 0 and "Traceback" not in output and named in output, output[-3000:]
    store = tmp_path / "store"
    finished = [m.parent for m in store.glob("*/*/manifest.json")] if store.exists() else []
    assert not [p for p in finished if p.parent.name not in ("base", "data")], "nothing past the failure"
    assert not list(store.glob("*/.*.tmp-*")) if store.exists() else True, "no half-written folder left"


@pytest.mark.slow   # doit in a process of its own: the hub library reads HF_HUB_OFFLINE when imported
def test_a_hub_model_that_cannot_be_fetched_is_one_line_and_no_stored_base(tmp_path):
    """Offline, the hub hands back the empty download folder as if it were the model: it used to be stored
    as a finished base, trusted by every rerun, and training died on it with a traceback."""
    from doit_cli import doit

    for _ in range(2):   # the rerun fails the same way: nothing was stored
        done = doit("build", "model=llama3.1-8b-instruct", store=tmp_path / "store", ok=None, process=True,
                    env={"HF_HUB_OFFLINE": "1"})
        assert done.returncode != 0 and "Traceback" not in done.output, done.output[-3000:]
        assert "model.hub_id = 'meta-llama/Llama-3.1-8B-Instruct': the hub gave no usable model" in done.output
        assert "point model.path at it" in done.output
    assert not list((tmp_path / "store").glob("*/*/manifest.json")), "no artifact from an empty download"
    assert not list((tmp_path / "store").glob("*/.*.tmp-*")), "no half-written folder left"


# --- found before training starts, with the names to use ----------------------------------------

@pytest.fixture(scope="module")
def tiny_base(tiny_llama):
    return tiny_llama


def train_context(tmp_path, base, *overrides):
    from dataclasses import replace

    from llmbuild.cli.tasks import stage_context
    from llmbuild.plan.graph import build_plan

    plan = build_plan(compose(ROOT, [f"store={tmp_path}", *overrides]), ROOT, strict=False)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return replace(stage_context(plan, "train", out), inputs={"base": base, "data": tmp_path})


def check(tmp_path, base, *overrides):
    """The train stage's checks on the config view it gets for `overrides`, training on `base`."""
    from llmbuild.stages import preflight

    preflight.check_before_training(train_context(tmp_path, base, *overrides).cfg, base)


@pytest.mark.slow   # builds a tiny model with torch
def test_lora_targets_the_model_lacks_are_named_with_the_ones_it_has(tmp_path, tiny_base):
    from llmbuild.errors import StageError

    with pytest.raises(StageError, match=r"no module named qproj; did you mean q_proj\?.*v_proj"):
        check(tmp_path, tiny_base, "lora.target=[qproj,v_proj]")
    check(tmp_path, tiny_base, "lora.target=[q_proj,v_proj]")
    check(tmp_path, tiny_base)   # [all]


@pytest.mark.slow
def test_liger_without_a_gpu_stops_before_training_with_the_settings_that_run(tmp_path, tiny_base, monkeypatch):
    """Liger's kernels are Triton's: on a machine with no GPU they would fail inside LLaMA-Factory's first step."""
    from llmbuild.errors import StageError
    from llmbuild.stages import preflight

    monkeypatch.setattr(preflight, "visible_gpus", lambda: 0)
    with pytest.raises(StageError, match=r"train.liger_kernel is on and this machine shows no GPU.*"
                                         r"Set train.liger_kernel=false"):
        check(tmp_path, tiny_base, "train.liger_kernel=true")
    monkeypatch.setattr(preflight, "visible_gpus", lambda: 1)
    check(tmp_path, tiny_base, "train.liger_kernel=true")


@pytest.mark.slow
def test_a_system_prompt_longer_than_cutoff_len_stops_before_training(tmp_path, tiny_base):
    from llmbuild.errors import StageError

    long = "word " * 400
    with pytest.raises(StageError, match=r"prompt.system is \d+ tokens and train.cutoff_len is 256"):
        check(tmp_path, tiny_base, f"prompt.system={long.strip()}")
    check(tmp_path, tiny_base, "prompt.system=Be brief.")
    # a cutoff that holds no conversation is the cutoff's fault, not a 3-token system prompt's
    with pytest.raises(StageError, match=r"^train.cutoff_len = 32 leaves no room for a conversation"):
        check(tmp_path, tiny_base, "prompt.system=Be brief.", "train.cutoff_len=32")


@pytest.mark.slow
def test_a_system_prompt_the_smoke_or_eval_context_cannot_hold_stops_before_training(tmp_path, tiny_base):
    from llmbuild.errors import StageError

    system = "prompt.system=" + " ".join(["word"] * 200)   # fits train.cutoff_len=1024
    check(tmp_path, tiny_base, system, "train.cutoff_len=1024")
    with pytest.raises(StageError, match=r"do not fit smoke.n_ctx=256.*Raise smoke.n_ctx above"):
        check(tmp_path, tiny_base, system, "train.cutoff_len=1024", "smoke.n_ctx=256")
    with pytest.raises(StageError, match=r"no room in eval.n_ctx=256"):
        check(tmp_path, tiny_base, system, "train.cutoff_len=1024", "eval.n_ctx=256")
    check(tmp_path, tiny_base, system, "train.cutoff_len=1024", "eval.n_ctx=256", "eval.enabled=false")


@pytest.mark.slow   # runs doit on a tiny model built with torch
def test_a_check_fails_the_build_while_it_is_planned_when_the_model_is_on_disk(tmp_path, tiny_base):
    """model.path is an HF folder: the train stage's checks run before any stage does, so the
    command stops with the stage's one line and the store holds nothing, not even base or data."""
    done = run_build(tmp_path, "model=local", f"model.path={tiny_base}", "model.name=X", "lora.target=[qproj]")
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if "qproj" in line]
    assert errors == ["ERROR: train: lora.target = ['qproj']: this model has no module named qproj; did you "
                      "mean q_proj? Its weight modules: down_proj, embed_tokens, gate_proj, k_proj, o_proj, q_proj, "
                      "up_proj, v_proj (or [all] for every linear layer)."], output[-3000:]
    store = tmp_path / "store"
    assert not [p.name for p in store.iterdir() if not p.name.startswith(".")] if store.exists() else True, \
        "no stage ran: no base, no data"


def fake_hf_folder(folder: Path) -> Path:
    """An HF folder as planning and the checks read it (config.json, the weights' headers, a
    tokenizer file), written without torch."""
    import json

    import numpy as np
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8,
                                                    "num_attention_heads": 2, "num_key_value_heads": 2}))
    weights = {f"model.layers.0.{name}.weight": np.zeros((8, 8), dtype=np.float32)
               for name in ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")}
    save_file(weights, str(folder / "model.safetensors"))
    vocab = {token: index for index, token in enumerate(["<unk>", "<|im_start|>", "<|im_end|>", "Hi"])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    chatml = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>", "eos_token": "<|im_end|>",
        "chat_template": chatml}))
    return folder


def _tokenizer_config(folder: Path, **changes) -> Path:
    import json

    path = folder / "tokenizer_config.json"
    config = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return folder


def test_the_prompt_format_is_decided_before_training(tmp_path):
    """No template and no model.chat_format, a template that does not parse, a format whose end-of-turn
    token the tokenizer lacks: each used to be found by the train or merge stage, after base and data
    (or after training)."""
    import json

    from llmbuild.errors import StageError

    def local(model: Path) -> tuple[str, ...]:
        return "model=local", f"model.path={model}", "model.name=X"

    chatml = fake_hf_folder(tmp_path / "chatml")
    plain = _tokenizer_config(fake_hf_folder(tmp_path / "plain"), chat_template=None)
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**config, "model_type": "gemma3_text"}))
    with pytest.raises(StageError, match=r"the model ships no chat template, so llmbuild cannot tell its prompt "
                                         r"format; its architecture \(gemma3_text\) is that of Gemma 2, Gemma 3, "
                                         r"whose format is model.chat_format=gemma"):
        check(tmp_path, plain, *local(plain))
    broken = _tokenizer_config(fake_hf_folder(tmp_path / "broken"),
                               chat_template="{% for m in messages %}\n{{ m.content }\n{% endfor %}")
    with pytest.raises(StageError, match=r"the model's chat template \(tokenizer_config.json \(its chat_template\) "
                                         r"in .*broken\) line 2: .*Fix the template there, or set prompt.template"):
        check(tmp_path, broken, *local(broken))
    check(tmp_path, broken, *local(broken), "prompt.template=chatml")   # llmbuild's own replaces it
    with pytest.raises(StageError, match=r"prompt.template: the llama3 format ends each turn with '<\|eot_id\|>', "
                                         r"which is not a token of this model's tokenizer"):
        check(tmp_path, chatml, *local(chatml), "prompt.template=llama3")
    check(tmp_path, chatml, *local(chatml))


def test_a_vllm_context_beyond_the_models_stops_before_training(tmp_path):
    import json

    from llmbuild.errors import StageError

    model = fake_hf_folder(tmp_path / "model")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 1024}))
    local = ("model=local", f"model.path={model}", "model.name=X", "target=[vllm]")
    with pytest.raises(StageError, match=r"target.vllm.max_model_len = 4096 is beyond the model's context \(1024 "
                                         r"tokens, config.json max_position_embeddings\).*Set it to 1024 or less"):
        check(tmp_path, model, *local, "target.vllm.max_model_len=4096")
    check(tmp_path, model, *local, "target.vllm.max_model_len=1024")


def test_a_sentencepiece_tokenizer_without_its_tokenizer_model_stops_before_training(tmp_path):
    """It used to train, then fail in convert ("Missing .../merged/tokenizer.model")."""
    from tokenizers import Tokenizer, models

    from llmbuild.errors import StageError

    model = fake_hf_folder(tmp_path / "model")
    vocab = [("<unk>", 0.0), ("<|im_start|>", 0.0), ("<|im_end|>", 0.0), ("▁Hi", -1.0)]
    Tokenizer(models.Unigram(vocab, unk_id=0)).save(str(model / "tokenizer.json"))
    local = ("model=local", f"model.path={model}", "model.name=X")
    with pytest.raises(StageError, match=r"has a SentencePiece tokenizer \(a Unigram model in tokenizer.json\) but "
                                         r"no tokenizer.model: llama.cpp's converter reads"):
        check(tmp_path, model, *local)
    (model / "tokenizer.model").write_bytes(b"")   # present: the converter takes it from here
    check(tmp_path, model, *local)


def test_the_checks_run_while_planning_for_each_training_stage_still_to_build(tmp_path):
    """cli/tasks.py: a train node not built yet, on a model already on disk, is checked with the
    train stage's message; in a pipeline each training stage on a model on disk is, under its slot.
    A built train node is not checked again."""
    from llmbuild.cli.tasks import check_before_building
    from llmbuild.errors import StageError
    from llmbuild.plan.graph import build_plan

    model = fake_hf_folder(tmp_path / "model")
    local = [f"store={tmp_path / 'store'}", "model=local", f"model.path={model}", "model.name=X"]
    plan = build_plan(compose(ROOT, [*local, "lora.target=[qproj]"]), ROOT)
    with pytest.raises(StageError, match=r"^train: lora.target = \['qproj'\]: this model has no module named "
                                         r"qproj; did you mean q_proj\?"):
        check_before_building([plan])
    check_before_building([build_plan(compose(ROOT, local), ROOT)])
    pipeline = build_plan(compose(ROOT, [*local, "recipe=demo-dpo", "pipeline.sft.lora.target=[qproj]"]), ROOT)
    with pytest.raises(StageError, match=r"^train@sft: lora.target = \['qproj'\]"):
        check_before_building([pipeline])
    built = tmp_path / "store" / "train" / plan.nodes["train"].key
    built.mkdir(parents=True)
    (built / "manifest.json").write_text("{}")
    check_before_building([plan])   # built already


def test_planning_a_build_whose_model_is_not_on_disk_yet_loads_no_check(tmp_path):
    """The demo's base is a GGUF to import: nothing to check while planning, and nothing imported for it."""
    code = (
        "import sys; from pathlib import Path; from llmbuild.config.compose import compose;"
        "from llmbuild.plan.graph import build_plan; from llmbuild.cli.tasks import check_before_building;"
        f"root = Path({str(ROOT)!r}); check_before_building([build_plan(compose(root, ['store={tmp_path}']), root)]);"
        "loaded = [m for m in ('llmbuild.stages.preflight', 'torch', 'transformers', 'safetensors')"
        " if m in sys.modules];"
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_a_model_built_during_the_run_is_checked_by_the_train_stage(tmp_path, tiny_base, monkeypatch):
    """A GGUF to import or a hub model is on disk only once the base stage has run: the train stage
    runs the same checks first thing, before it writes a sample."""
    from llmbuild.errors import StageError
    from llmbuild.stages import train

    monkeypatch.setattr(train, "write_samples", lambda *a: pytest.fail("the checks come first"))
    ctx = train_context(tmp_path, tiny_base, "prompt.system=" + " ".join(["word"] * 400))
    with pytest.raises(StageError, match=r"prompt.system is \d+ tokens and train.cutoff_len is 256"):
        train.run(ctx)


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_preview_needs_one_sample_or_more(tmp_path, value):
    from doit_cli import doit

    done = doit("preview", f"samples={value}", store=tmp_path / "store", ok=False)
    assert "give a number of samples of 1 or more" in done.output and "Traceback" not in done.output, done.output
