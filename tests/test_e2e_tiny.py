"""End to end on a tiny random model: really train, merge, convert, quantize and run, then check
which tasks a rebuild and one-key changes run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tiny_model import build_tiny_llama

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    top = tmp_path_factory.mktemp("e2e")
    model = build_tiny_llama(top / "tiny-llama")
    return top, model


def doit_build(top: Path, model: Path, *extra: str, command: str = "build") -> tuple[list[str], str]:
    argv = [sys.executable, "-m", "doit", command, "--db-file", str(top / "doit.db"),
            f"store={top / 'store'}", "model=local", f"model.path={model}", "model.name=Tiny-Llama",
            "dataset.max_samples=8", "train.max_steps=2", "train.logging_steps=1",
            "train.per_device_train_batch_size=2", "smoke.max_tokens=8", "eval.enabled=false", *extra]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    ran = re.findall(r"^\.  (\w+):", result.stdout, flags=re.M)
    return ran, result.stdout


def out_folder(stdout: str) -> Path:
    """The variant's output folder, from the summary `doit build` prints at the end."""
    folder = re.findall(r"^\S+: outputs in (.+)/$", stdout, flags=re.M)[-1]
    return (ROOT / folder).resolve()


def test_build_rebuild_and_one_key_changes(workspace):
    top, model = workspace
    ran, out = doit_build(top, model)
    assert ran == ["base", "data", "train", "merge", "convert", "parity", "quantize", "ollama", "smoke", "package"]
    assert len(out.splitlines()) < 45 and "INFO" not in out, out   # tools' own output is in the logs
    store = top / "store"
    variant = next((store / "out").iterdir())
    assert "outputs in" in out and str(variant.name) in out

    gguf = variant / "Tiny-Llama-Q4_K_M.gguf"
    assert gguf.is_file() and (variant / "Tiny-Llama-F16.gguf").is_file()
    written = json.loads((gguf.resolve().parent / "quantize.json").read_text())
    assert written["quantized_tensors"] > 0 and written["fallback"] == {}, "rows of 256 fit every K-quant"
    assert (variant / "adapter" / "adapter_model.safetensors").is_file()
    assert (variant / "adapter" / "trainer_log.jsonl").is_file()
    modelfile = (variant / "ollama" / "Modelfile").read_text()
    assert "FROM ./Tiny-Llama-Q4_K_M.gguf" in modelfile and (variant / "ollama" / "Tiny-Llama-Q4_K_M.gguf").is_file()
    assert "PARAMETER stop <|im_end|>" in modelfile and "PARAMETER temperature 0.7" in modelfile
    answers = json.loads((variant / "smoke.md").resolve().with_name("answers.json").read_text())
    assert answers and all(a["completion_tokens"] > 0 and a["tokens_per_second"] for a in answers)

    from gguf import GGUFReader
    fields = GGUFReader(str(gguf)).fields
    assert fields["tokenizer.ggml.pre"].contents() == "smollm"
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()

    manifest = json.loads((variant / "merged").resolve().parent.joinpath("manifest.json").read_text())
    assert manifest["tools"]["llamafactory"] and manifest["upstream"]["train"] and manifest["seconds"] > 0

    ran, out = doit_build(top, model)
    assert ran == [] and len(re.findall(r"^-- ", out, flags=re.M)) == 10, "a rebuild with nothing changed runs nothing"

    ran, _ = doit_build(top, model, "quant=q8_0")
    assert ran == ["quantize", "ollama", "smoke", "package"]
    ran, _ = doit_build(top, model)
    assert ran == [], "going back to q4_k_m reuses the stored artifact"

    ran, _ = doit_build(top, model, "prompt.temperature=0.2")
    assert ran == ["ollama", "package"]

    ran, _ = doit_build(top, model, "lora.r=4")
    assert ran == ["train", "merge", "convert", "parity", "quantize", "ollama", "smoke", "package"]


def test_quantizer_threads_change_no_byte(workspace, tmp_path):
    """Why quant.nthread is in no key (config/schema.py, NOT_BUILT): llama.cpp's quantizer writes
    the same bytes with any number of threads."""
    from llmbuild.adapters import llama_cpp

    top, model = workspace
    _, out = doit_build(top, model)
    variant = out_folder(out)
    stored = (variant / "Tiny-Llama-Q4_K_M.gguf").read_bytes()   # quant.nthread=0: every core
    for threads in (1, 2):
        llama_cpp.quantize(variant / "Tiny-Llama-F16.gguf", tmp_path / f"{threads}.gguf", "q4_k_m", threads)
        assert (tmp_path / f"{threads}.gguf").read_bytes() == stored, f"{threads} thread(s) wrote other bytes"


def test_a_token_reaches_no_file_of_a_real_build(workspace):
    """`+train.extra.hf_hub_token=...` trains (LLaMA-Factory gets HF_TOKEN), and the token is in no
    file of the store, not in doit's database, not on the terminal."""
    top, model = workspace
    token = "hf_FAKE123456"
    ran, out = doit_build(top, model, f"+train.extra.hf_hub_token={token}", "lora.r=3")
    assert "train" in ran and token not in out
    train_dir = (out_folder(out) / "adapter").resolve().parent
    assert "hf_hub_token" not in (train_dir / "llamafactory.yaml").read_text()
    leaks = [p for p in [*top.rglob("*"), *ROOT.joinpath("build").rglob("*")]
             if p.is_file() and not p.is_symlink() and p.stat().st_size < 2**30 and token.encode() in p.read_bytes()]
    assert leaks == []


def test_verbosity_2_streams_the_tools_own_output(workspace):
    top, model = workspace
    quiet = run_doit(top, model, "build", f"store={top / 'store'}", "quant.convert_type=bf16", "quant=q8_0")
    assert quiet.returncode == 0 and "INFO:hf-to-gguf:" not in quiet.stdout + quiet.stderr
    converted = next((top / "store" / "convert").glob("*/Tiny-Llama-BF16.gguf")).parent
    assert "INFO:hf-to-gguf:" in (converted / "convert.log").read_text(), "the full output is in the artifact's log"
    loud = run_doit(top, model, "build", "-v", "2", f"store={top / 'store'}", "quant.convert_type=f32",
                    "quant=q8_0")
    assert loud.returncode == 0, loud.stdout[-3000:] + loud.stderr[-3000:]
    assert "INFO:hf-to-gguf:" in loud.stdout + loud.stderr, "-v 2: the converter's own output on the terminal"


def test_training_yaml_runs_by_hand_unchanged(workspace):
    top, model = workspace
    doit_build(top, model)
    (train_dir,) = [p for p in (top / "store" / "train").iterdir() if not p.name.endswith(".failed")][:1]
    args = yaml.safe_load((train_dir / "llamafactory.yaml").read_text())
    assert (train_dir / args["model_name_or_path"] / "config.json").exists()
    assert (train_dir / args["dataset_dir"] / "dataset_info.json").exists()
    before = (train_dir / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    cli = Path(sys.executable).with_name("llamafactory-cli")
    result = subprocess.run([str(cli), "train", "llamafactory.yaml"], cwd=train_dir, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (train_dir / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns != before


def run_doit(top: Path, model: Path, command: str, *extra: str, db: str = "doit.db", wait: bool = True,
             extra_after: tuple[str, ...] = ()):
    argv = [sys.executable, "-m", "doit", command, *extra, "--db-file", str(top / db),
            "model=local", f"model.path={model}", "model.name=Tiny-Llama", "model.chat_format=chatml",
            "dataset.max_samples=8", "train.max_steps=2", "train.per_device_train_batch_size=2", "smoke.max_tokens=8",
            "eval.enabled=false", *extra_after]
    if not wait:
        return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)


def test_parallel_sweep_shares_stages_and_trains_one_at_a_time(workspace):
    top, model = workspace
    cheap_eval = ("eval.enabled=true", "eval.quants=[]", "eval.base=false", "eval.max_new_tokens=4")
    result = run_doit(top, model, "sweep", "-n", "2", f"store={top / 'sweep'}", "lora.r=2,4", "quant=q4_k_m,q8_0",
                      db="sweep.db", extra_after=cheap_eval)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # counted in the fresh store: with -n 2, doit's per-task lines can interleave in stdout
    store = top / "sweep"
    counts = {stage.name: len(list(stage.glob("*/manifest.json"))) for stage in store.iterdir()
              if stage.is_dir() and any(stage.glob("*/manifest.json"))}
    counts["package"] = len(list((store / "out").iterdir()))
    assert counts == {"base": 1, "data": 1, "train": 2, "merge": 2, "convert": 2, "parity": 2, "quantize": 4,
                      "ollama": 4, "smoke": 4, "eval": 4, "report": 4, "package": 4}
    spans = []
    for manifest in (top / "sweep" / "train").glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        end = manifest.stat().st_mtime
        spans.append((end - data["seconds"], end))
    spans.sort()
    assert spans[0][1] <= spans[1][0] + 1.0, f"two trainings overlapped: {spans}"
    summary = top / "sweep" / "sweeps"
    (folder,) = list(summary.iterdir())
    table = (folder / "summary.md").read_text()
    assert table.count("| demo_") == 4 and "final_train_loss" in table and (folder / "summary.csv").is_file()
    report = (folder / "report.md").read_text()
    assert "# Sweep: lora.r, quant" in report and report.count("| demo_") == 4, report
    assert "data:image/png;base64," in (folder / "report.html").read_text()


def test_two_doit_processes_share_one_store_safely(workspace):
    top, model = workspace
    store = f"store={top / 'shared'}"
    first = run_doit(top, model, "build", store, "lora.r=6", db="a.db", wait=False)
    second = run_doit(top, model, "build", store, "lora.r=6", db="b.db", wait=False)
    outputs = [p.communicate()[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs[0][-3000:] + outputs[1][-3000:]
    # counted by the train stage's result line
    trained = sum(len(re.findall(r"^  train loss ", out, flags=re.M)) for out in outputs)
    assert trained == 1, "the second process must reuse the first one's training, not repeat it"
    assert len([p for p in (top / "shared" / "train").iterdir() if not p.name.startswith(".")]) == 1


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_doit_serve_answers_the_official_openai_client(workspace):
    import time
    import urllib.request

    from openai import OpenAI

    top, model = workspace
    port = free_port()
    server = run_doit(top, model, "serve", f"store={top / 'store'}", f"target.llamacpp.port={port}", wait=False)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()[-3000:]
                time.sleep(0.5)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
        (served,) = client.models.list().data
        messages = [{"role": "user", "content": "Who are you?"}]
        reply = client.chat.completions.create(model=served.id, messages=messages, max_tokens=8, temperature=0)
        assert reply.choices[0].message.role == "assistant" and reply.usage.completion_tokens > 0

        chunks = list(client.chat.completions.create(model=served.id, messages=messages, max_tokens=8, stream=True))
        assert len(chunks) > 1 and any(c.choices and c.choices[0].delta.content for c in chunks)

        tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome"]}},
                                                             "required": ["city"]}}}  # an enum: a random model ends it
        called = client.chat.completions.create(
            model=served.id, messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[tool],
            tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=48, temperature=0)
        (call,) = called.choices[0].message.tool_calls
        assert call.type == "function" and call.function.name == "get_weather"
        assert json.loads(call.function.arguments)["city"] in ("Paris", "Rome")
    finally:
        server.terminate()
        server.wait(timeout=30)
    # stopping `doit serve` (SIGTERM, as a service manager does) stops the server it started
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _port_open(port):
        time.sleep(0.5)
    assert not _port_open(port), "the llama.cpp server outlived `doit serve`"


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_vllm_and_hf_targets_reuse_the_merged_model(workspace):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    top, model = workspace
    doit_build(top, model)
    ran, _ = doit_build(top, model, "target=[ollama,llamacpp,vllm,hf]")
    assert ran == ["vllm", "hf", "package"], "new targets must not rebuild anything upstream"
    variant = next(p for p in (top / "store" / "out").iterdir() if (p / "vllm").exists())

    vllm = (variant / "vllm").resolve()
    argv = json.loads((vllm / "vllm_command.json").read_text())
    model = argv[argv.index("--model") + 1]
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"] and (vllm / model / "config.json").is_file()
    assert argv[argv.index("--served-model-name") + 1] == "Tiny-Llama"
    assert argv[argv.index("--chat-template") + 1] == "chat_template.jinja"
    assert "--enable-auto-tool-choice" not in argv, "ChatML has no vLLM tool-call parser"
    assert 'exec "${VLLM_PYTHON:-python3}" -m vllm.entrypoints.openai.api_server' in (vllm / "serve.sh").read_text()
    tokenizer = AutoTokenizer.from_pretrained(vllm / model)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                           tokenize=False, chat_template=(vllm / "chat_template.jinja").read_text())
    assert prompt == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")

    card = (variant / "hf" / "model" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "transformers" and "llmbuild" in front["tags"]
    assert "| LoRA rank / alpha / dropout | 8 / 16 / 0.0 |" in card and "`train`:" in card
    loaded = AutoModelForCausalLM.from_pretrained(variant / "hf" / "model")
    assert loaded.config.hidden_size == 256


def test_doit_preview_shows_llamafactorys_samples_with_trained_spans(workspace):
    top, model = workspace
    result = run_doit(top, model, "preview", f"store={top / 'store'}", "samples=2")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "--- sample 2:" in result.stdout and "--- sample 3:" not in result.stdout
    trained = [span for span in re.findall(r"⟦(.*?)⟧", result.stdout, flags=re.S) if span.strip()]
    assert trained and all(span.rstrip("\n").endswith("<|im_end|>") for span in trained), "answers end with EOS"
    assert "<|im_start|>user" in result.stdout and "input_ids: [" in result.stdout


TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}


def test_eval_and_report_on_a_tool_calling_dataset(workspace):
    top, model = workspace
    data = top / "tools.jsonl"
    cities = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Seoul", "Quito", "Perth"]
    data.write_text("".join(json.dumps({"tools": [TOOL], "messages": [
        {"role": "user", "content": f"Weather in {city}?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]}]}) + "\n"
        for city in cities))
    setup = [f"dataset.path={data}", "dataset.name=tiny_tools", "dataset.holdout=3", "prompt.template=qwen",
             "eval.enabled=true", "eval.quants=[q8_0]", "eval.max_new_tokens=12"]
    ran, out = doit_build(top, model, *setup)
    assert ran[-3:] == ["eval", "report", "package"] and "quantize" in ran
    variant = out_folder(out)
    result = json.loads((variant / "eval" / "eval.json").read_text())
    assert [m["name"] for m in result["models"]] == ["base", "fine-tuned", "f16", "q8_0", "q4_k_m"]
    assert result["holdout"]["rows"] == 3 and len(result["samples"]) == 3
    for m in result["models"]:
        assert m["exact_match"] is None and m["rouge_l"] is None  # no plain answers were held out
        assert set(m["tool_call"]) == {"parsed", "name", "arguments"}
        assert all(0.0 <= v <= 1.0 for v in m["tool_call"].values())
        assert m["perplexity"] > 1 and m["answer_tokens"] > 0 and m["peak_rss_bytes"] > 0
    held = {s["prompt"] for s in result["samples"]}
    trained = (variant / "dataset" / "samples.json").read_text()   # the samples as trained
    assert len(held) == 3 and not any(prompt in trained for prompt in held), "held-out rows were trained on"
    assert (variant / "report" / "report.html").is_file() and (variant / "report" / "report.md").is_file()

    # the report shows the resolved config, so a value it shows is part of its key: not shared
    ran, named = doit_build(top, model, *setup, "target.ollama.model_name=quill")
    assert ran == ["ollama", "report", "package"]
    assert "model_name: quill" in (out_folder(named) / "report" / "report.md").read_text()
    assert "model_name: null" in (variant / "report" / "report.md").read_text()
    assert "ollama create quill -f Modelfile" in (out_folder(named) / "ollama" / "Modelfile").read_text()

    ran, _ = doit_build(top, model, *setup, "eval.max_new_tokens=6")
    assert ran == ["eval", "report", "package"], "an eval setting re-runs eval (and its report) only"

    ran, out = doit_build(top, model, *setup, "eval.max_new_tokens=6,12", command="report")
    assert set(ran) == {"package"} and out.count("report/report.html") == 2 and "sweep report:" in out  # links only
    sweep = Path(re.search(r"sweep report: (\S+)", out)[1])
    assert "eval.max_new_tokens" in (sweep.parent / "report.md").read_text()


def test_split_gguf_as_base_input_and_as_output(workspace):
    from llmbuild.adapters import gguf_split
    from llmbuild.facts.gguf_files import parse_size, shards_of

    top, model = workspace
    doit_build(top, model)  # nothing to do when the first test ran
    f16 = next((top / "store" / "convert").glob("*/Tiny-Llama-F16.gguf"))
    shards_dir = top / "split-base"
    shards_dir.mkdir()
    shards = gguf_split.split(f16, shards_dir, parse_size("1M"))
    assert len(shards) > 2

    ran, out = doit_build(top, shards[0], "model.name=Tiny-Split", "quant.split_max_size=1M")
    assert ran[0] == "base" and "split" in ran and f"split into {len(shards)} files" in out
    split_out = out_folder(out) / "split"
    written = sorted(split_out.glob("Tiny-Split-Q4_K_M-*-of-*.gguf"))
    assert len(written) > 1 and shards_of(written[0]) == written


def test_ollama_adapter_target_applies_the_lora_gguf_to_the_base(workspace):
    import llama_cpp
    import numpy as np

    top, model = workspace
    ran, out = doit_build(top, model, "target.ollama.adapter=true", "quant=f16")
    assert "lora_gguf" in ran and "ollama" in ran
    folder = out_folder(out) / "ollama"
    modelfile = (folder / "Modelfile").read_text()
    assert "FROM ./Tiny-Llama-base-F16.gguf" in modelfile and "ADAPTER ./Tiny-Llama-LoRA-F16.gguf" in modelfile
    assert (folder / "Tiny-Llama-base-F16.gguf").is_file() and (folder / "Tiny-Llama-LoRA-F16.gguf").is_file()

    def logits(**paths):
        llm = llama_cpp.Llama(n_ctx=64, logits_all=True, verbose=False, **paths)
        ids = llm.tokenize(b"<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n", special=True)
        llm.eval(ids)
        return np.array(llm.scores[:len(ids)])

    merged = logits(model_path=str(out_folder(out) / "Tiny-Llama-F16.gguf"))
    applied = logits(model_path=str(folder / "Tiny-Llama-base-F16.gguf"),
                     lora_path=str(folder / "Tiny-Llama-LoRA-F16.gguf"))
    base = logits(model_path=str(folder / "Tiny-Llama-base-F16.gguf"))
    # the adapter moves the base onto the merged model (f16 rounding apart)
    assert np.abs(applied - merged).max() < 0.1 * np.abs(base - merged).max()


def test_qlora_trains_on_a_4bit_base_and_merges_into_16_bits(workspace):
    from safetensors.torch import load_file

    top, model = workspace
    doit_build(top, model)
    ran, out = doit_build(top, model, "lora.quantization_bit=4")
    assert ran[:2] == ["train", "merge"], "QLoRA changes training and what follows it, not base or data"
    variant = out_folder(out)
    train_dir = (variant / "adapter").resolve().parent
    assert yaml.safe_load((train_dir / "llamafactory.yaml").read_text())["quantization_bit"] == 4
    assert "Quantizing model to 4 bit with bitsandbytes" in (train_dir / "train.log").read_text()

    merged_dir = (variant / "merged").resolve()
    assert "quantization_config" not in json.loads((merged_dir / "config.json").read_text()), \
        "the adapter is merged into the 16-bit base, not into the 4-bit training copy"
    name = "model.layers.0.self_attn.q_proj.weight"
    base = load_file(next((variant / "base").resolve().rglob("model.safetensors")))[name]
    merged = load_file(next(merged_dir.glob("*.safetensors")))[name]
    assert merged.shape == base.shape and merged.dtype.is_floating_point
    assert 0 < (merged.float() - base.float()).abs().max() < 0.1, "the LoRA delta, small after two steps"
    assert (variant / "Tiny-Llama-Q4_K_M.gguf").is_file()


@pytest.mark.parametrize("mode, extra", [("layers", ()), ("model", ()), ("layers", ("lora.quantization_bit=4",))],
                         ids=["layers", "model", "layers-qlora"])
def test_compiled_training_trains_the_same_adapter_as_eager(workspace, mode, extra):
    """train.compile: each decoder layer compiled by llmbuild's launcher of LLaMA-Factory, as the YAML's
    "Run by hand" line says, or LLaMA-Factory's torch_compile in the YAML, on a 16-bit or a 4-bit base
    (QLoRA: bitsandbytes' layers inside the compiled ones); a new train key, and (in fp32 on the CPU,
    where inductor rounds nothing differently) the same losses as the eager run."""
    from llmbuild.adapters.llamafactory import logged_losses

    top, model = workspace
    _, out = doit_build(top, model, *extra)
    eager = logged_losses((out_folder(out) / "adapter").resolve())
    ran, out = doit_build(top, model, f"train.compile={mode}", *extra)
    assert ran[:2] == ["train", "merge"], "compiling changes the train key and what follows it"
    adapter = (out_folder(out) / "adapter").resolve()
    text = (adapter.parent / "llamafactory.yaml").read_text()
    log = (adapter.parent / "train.log").read_text()
    if mode == "layers":
        assert "Run by hand: cd train/" in text and \
            "&& CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_EMULATE_PRECISION_CASTS=1 python -m " \
            "llmbuild.adapters.llamafactory_compiled llamafactory.yaml" in text
        assert "torch_compile" not in yaml.safe_load(text)
        assert "llmbuild: 2 decoder layers (LlamaDecoderLayer) compiled with torch.compile; the first steps " \
            "compile them\n" in log, "in fp32 (this CPU run) nothing is said of bf16 rounding"
        assert "train.compile=layers: each decoder layer compiled" in out
    else:
        assert yaml.safe_load(text)["torch_compile"] is True and "decoder layers" not in log
        assert "&& CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_EMULATE_PRECISION_CASTS=1 llamafactory-cli train" in text
    compiled = logged_losses(adapter)
    assert len(compiled) == len(eager) == 2
    assert compiled == pytest.approx(eager, abs=1e-3)


def test_packed_rows_train_and_their_tokens_are_counted(workspace):
    """train.neat_packing: samples packed into rows with a block-diagonal mask; the train log's token count
    is the rows' tokens (the Trainer's non-padding count would sum the 4-D mask into a negative number)."""
    top, model = workspace
    _, out = doit_build(top, model, "train.neat_packing=true")
    adapter = (out_folder(out) / "adapter").resolve()
    assert yaml.safe_load((adapter.parent / "llamafactory.yaml").read_text())["neat_packing"] is True
    summary = re.search(r"over \d+ logged steps, ([\d,]+) tokens \(packed rows, padding included\) at ([\d,]+) "
                        r"tokens/s", out)
    assert summary, out[-3000:]
    assert int(summary[1].replace(",", "")) > 0
