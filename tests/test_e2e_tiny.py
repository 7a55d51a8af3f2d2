"""End to end on a tiny random model: really train, merge, convert, quantize and run, then check
which tasks a rebuild and one-key changes run. The standard build is the session's (conftest.py's
`tiny_build`); a test that counts what runs gets a store of its own seeded with it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import copy_store
from doit_cli import ROOT, doit, popen

pytestmark = pytest.mark.slow
STANDARD = ["base", "data", "train", "merge", "convert", "parity", "quantize", "ollama", "smoke", "package"]
# the standard build's two logged losses: the tiny model is seeded and so is training (LLaMA-Factory's
# seed 42), so they repeat on any CPU to within rounding
STANDARD_LOSSES = [10.8136, 10.8895]
# the data stage's files: its held-out split is seeded (dataset.holdout_seed), so they repeat byte for byte
STANDARD_DATA = {"train.jsonl": "6c9fd0f80b67b32c487dc72422f9a14ede7bdad5fc41a44779ed0d1ddcfca716",
                 "heldout.jsonl": "e06202a8b31a7a0c8e7b744b0a0e2d08c892ce62f9fea64bba6524a6ce7abb10"}


def test_build_rebuild_and_one_key_changes(tiny_build, fresh_store):
    first = tiny_build.first
    assert first.ran == STANDARD
    assert len(first.stdout.splitlines()) < 45 and "INFO" not in first.stdout, first.stdout   # tools' output: logs
    variant = first.out
    assert f"{variant.name}: outputs in" in first.stdout

    gguf = variant / "Tiny-Llama-Q4_K_M.gguf"
    assert gguf.is_file() and (variant / "Tiny-Llama-F16.gguf").is_file()
    written = json.loads((gguf.resolve().parent / "quantize.json").read_text())
    assert written["quantized_tensors"] > 0 and written["fallback"] == {}, "rows of 256 fit every K-quant"
    assert (variant / "adapter" / "adapter_model.safetensors").is_file()
    from llmbuild.adapters.llamafactory import logged_losses
    assert logged_losses(variant / "adapter") == pytest.approx(STANDARD_LOSSES, abs=2e-3)
    modelfile = (variant / "ollama" / "Modelfile").read_text()
    assert "FROM ./Tiny-Llama-Q4_K_M.gguf" in modelfile and (variant / "ollama" / "Tiny-Llama-Q4_K_M.gguf").is_file()
    assert "PARAMETER stop <|im_end|>" in modelfile and "PARAMETER temperature 0.7" in modelfile
    assert not (variant / "merged" / "Modelfile").exists(), "LLaMA-Factory's own Modelfile prompts in no format"
    answers = json.loads((variant / "smoke.md").resolve().with_name("answers.json").read_text())
    assert answers and all(a["completion_tokens"] > 0 and a["tokens_per_second"] for a in answers)

    from gguf import GGUFReader
    fields = GGUFReader(str(gguf)).fields
    assert fields["tokenizer.ggml.pre"].contents() == "smollm"
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()

    manifest = json.loads((variant / "merged").resolve().parent.joinpath("manifest.json").read_text())
    assert manifest["tools"]["llamafactory"] and manifest["upstream"]["train"] and manifest["seconds"] > 0

    (data,) = fresh_store.glob("data/*/manifest.json")
    files = json.loads(data.read_text())["files"]
    assert {name: files[name]["sha256"] for name in STANDARD_DATA} == STANDARD_DATA

    # in a store of its own, seeded with that build: the variant's links are made for this store
    assert tiny_build.build(store=fresh_store).ran == ["package"]
    again = tiny_build.build(store=fresh_store)
    assert again.ran == [] and len(re.findall(r"^-- ", again.stdout, flags=re.M)) == 10, "nothing changed: no-op"
    assert tiny_build.build("quant=q8_0", store=fresh_store).ran == ["quantize", "ollama", "smoke", "package"]
    assert tiny_build.build(store=fresh_store).ran == [], "going back to q4_k_m reuses the stored artifact"
    assert tiny_build.build("prompt.temperature=0.2", store=fresh_store).ran == ["ollama", "package"]
    assert tiny_build.build("lora.r=4", store=fresh_store).ran == STANDARD[2:]


def test_quantizer_threads_change_no_byte(tiny_build, tmp_path):
    """Why quant.nthread is in no key (config/schema.py, NOT_BUILT): llama.cpp's quantizer writes
    the same bytes with any number of threads."""
    from llmbuild.adapters import llama_cpp_tools

    variant = tiny_build.first.out
    stored = (variant / "Tiny-Llama-Q4_K_M.gguf").read_bytes()   # quant.nthread=0: every core
    for threads in (1, 2):
        llama_cpp_tools.quantize(variant / "Tiny-Llama-F16.gguf", tmp_path / f"{threads}.gguf", "q4_k_m",
                                 nthread=threads, log=tmp_path / f"{threads}.log")
        assert (tmp_path / f"{threads}.gguf").read_bytes() == stored, f"{threads} thread(s) wrote other bytes"


@pytest.fixture(scope="module")
def two_builders(tiny_build, tmp_path_factory):
    """Two `doit build` processes started at once on one store, seeded with the standard build, for a
    variant that trains packed rows with a hub token given: (both processes' output, the store)."""
    store = copy_store(tiny_build.pristine, tmp_path_factory.mktemp("two") / "store")
    extra = ("train.neat_packing=true", f"+train.extra.hf_hub_token={TOKEN}")
    first = popen("build", *tiny_build.overrides, *extra, store=store, db=store.parent / "a.db")
    second = popen("build", *tiny_build.overrides, *extra, store=store, db=store.parent / "b.db")
    outputs = [p.communicate()[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs[0][-3000:] + outputs[1][-3000:]
    return outputs, store


TOKEN = "hf_FAKE123456"


@pytest.mark.xdist_group("two_builders")   # one worker builds the fixture
def test_two_doit_processes_share_one_store_safely(two_builders):
    outputs, store = two_builders
    trained = sum(len(re.findall(r"^  train loss ", out, flags=re.M)) for out in outputs)   # train's result line
    assert trained == 1, "the second process must reuse the first one's training, not repeat it"
    assert len([p for p in (store / "train").iterdir() if not p.name.startswith(".")]) == 2   # seeded + this one


@pytest.mark.xdist_group("two_builders")   # one worker builds the fixture
def test_a_token_reaches_no_file_of_a_real_build(two_builders):
    """`+train.extra.hf_hub_token=...` trains (LLaMA-Factory gets HF_TOKEN), and the token is in no
    file of the store, not in doit's database, not on the terminal."""
    outputs, store = two_builders
    assert not [out for out in outputs if TOKEN in out]
    (train_dir,) = [p for p in (store / "train").iterdir()
                    if "neat_packing: true" in (p / "llamafactory.yaml").read_text()]
    assert "hf_hub_token" not in (train_dir / "llamafactory.yaml").read_text()
    leaks = [p for p in [*store.parent.rglob("*"), *ROOT.joinpath("build").rglob("*")]
             if p.is_file() and not p.is_symlink() and p.stat().st_size < 2**30 and TOKEN.encode() in p.read_bytes()]
    assert leaks == []


@pytest.mark.xdist_group("two_builders")   # one worker builds the fixture
def test_packed_rows_train_and_their_tokens_are_counted(two_builders):
    """train.neat_packing: samples packed into rows with a block-diagonal mask; the train log's token count
    is the rows' tokens (the Trainer's non-padding count would sum the 4-D mask into a negative number)."""
    outputs, store = two_builders
    (out,) = [out for out in outputs if "  train loss " in out]
    packed = [p for p in (store / "train").iterdir()
              if yaml.safe_load((p / "llamafactory.yaml").read_text()).get("neat_packing") is True]
    assert len(packed) == 1
    summary = re.search(r"over \d+ logged steps, ([\d,]+) tokens \(packed rows, padding included\) at ([\d,]+) "
                        r"tokens/s", out)
    assert summary, out[-3000:]
    assert int(summary[1].replace(",", "")) > 0


def test_verbosity_2_streams_the_tools_own_output(tiny_build):
    assert "INFO:hf-to-gguf:" not in tiny_build.first.output
    converted = next(tiny_build.store.glob("convert/*/Tiny-Llama-F16.gguf")).parent
    assert "INFO:hf-to-gguf:" in (converted / "convert.log").read_text(), "the full output is in the artifact's log"
    loud = tiny_build.build("quant.convert_type=bf16", "quant=q8_0", options=("-v", "2"))
    assert "convert" in loud.ran and "INFO:hf-to-gguf:" in loud.output, "-v 2: the converter's output on the terminal"


def test_training_yaml_runs_by_hand_unchanged_and_leaves_the_artifact_as_built(tiny_build, fresh_store, tmp_path):
    """The YAML header's "Run by hand" line, run as a shell runs it: the same training (losses), its
    adapter in the user's folder, the store's adapter untouched."""
    (train_dir,) = list((fresh_store / "train").iterdir())
    text = (train_dir / "llamafactory.yaml").read_text()
    args = yaml.safe_load(text)
    assert (train_dir / args["model_name_or_path"] / "config.json").exists()
    assert (train_dir / args["dataset_dir"] / "dataset_info.json").exists()
    assert not list((train_dir / "adapter").glob("checkpoint-*")), "a finished adapter carries no Trainer checkpoint"
    assert "checkpoint-2/" in (train_dir / "train.log").read_text(), "LLaMA-Factory saved one at the last step"
    line = re.search(r"Run by hand \(the adapter goes to (\S+); this artifact stays as built\): (cd .*)$",
                     text.splitlines()[0])
    assert line, text.splitlines()[0]
    before = {p.name: p.read_bytes() for p in (train_dir / "adapter").iterdir() if p.is_file()}
    import os
    bin_dir = Path(sys.executable).parent   # llamafactory-cli as the user's activated environment has it
    result = subprocess.run(["bash", "-c", line[2]], cwd=fresh_store, capture_output=True, text=True,
                            env={**os.environ, "HOME": str(tmp_path), "PATH": f"{bin_dir}:{os.environ['PATH']}",
                                 "HF_HUB_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert {p.name: p.read_bytes() for p in (train_dir / "adapter").iterdir() if p.is_file()} == before
    rerun = Path(line[1].replace("$HOME", str(tmp_path)))
    assert rerun == tmp_path / "llmbuild-by-hand" / f"train-{train_dir.name}"
    from llmbuild.adapters.llamafactory import logged_losses
    assert logged_losses(rerun) == pytest.approx(STANDARD_LOSSES, abs=2e-3), "the same training"
    assert logged_losses(train_dir / "adapter") == pytest.approx(STANDARD_LOSSES, abs=2e-3)


def test_parallel_sweep_shares_stages_and_trains_one_at_a_time(local_sweep):
    """conftest.SWEEP_2X2 with `doit sweep -n 2` on an empty store (jobs.train_at_once=1)."""
    store = local_sweep
    # counted in the store: with -n 2, doit's per-task lines can interleave in stdout
    counts = {stage.name: len(list(stage.glob("*/manifest.json"))) for stage in store.iterdir()
              if stage.is_dir() and any(stage.glob("*/manifest.json"))}
    counts["package"] = len(list((store / "out").iterdir()))
    assert counts == {"base": 1, "data": 1, "train": 2, "merge": 2, "convert": 2, "parity": 2, "quantize": 4,
                      "ollama": 4, "smoke": 4, "eval": 4, "report": 4, "package": 4}
    spans = []
    for manifest in (store / "train").glob("*/manifest.json"):
        data = json.loads(manifest.read_text())
        end = manifest.stat().st_mtime
        spans.append((end - data["seconds"], end))
    spans.sort()
    assert spans[0][1] <= spans[1][0] + 1.0, f"two trainings overlapped: {spans}"
    (folder,) = list((store / "sweeps").iterdir())
    table = (folder / "summary.md").read_text()
    assert table.count("| demo_") == 4 and "final_train_loss" in table and (folder / "summary.csv").is_file()
    report = (folder / "report.md").read_text()
    assert "# Sweep: lora.r, quant" in report and report.count("| demo_") == 4, report
    assert "data:image/png;base64," in (folder / "report.html").read_text()


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post_raw(port: int, path: str, body: bytes) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_doit_serve_answers_the_official_openai_client(tiny_build):
    import time
    import urllib.request

    from openai import OpenAI

    port = free_port()
    server = popen("serve", *tiny_build.overrides, f"target.llamacpp.port={port}", store=tiny_build.store)
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

        # requests OpenAI's API refuses get its 4xx and error object; no answer shows the server's internals
        for body, status, param in ((b"{not json", 400, None), (b"", 400, None), (b"[1]", 400, None),
                                    (json.dumps({"model": served.id}).encode(), 400, "messages"),
                                    (json.dumps({"messages": []}).encode(), 400, "messages"),
                                    (json.dumps({"messages": [{"content": "Hi"}]}).encode(), 400, "messages[0].role"),
                                    (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), 400,
                                     "messages[0].content"),
                                    (json.dumps({"model": "gpt-4o", "messages": messages}).encode(), 404, "model"),
                                    (json.dumps({"messages": messages, "max_tokens": "many"}).encode(), 400, None)):
            answer = _post_raw(port, "/v1/chat/completions", body)
            assert answer[0] == status, (body, answer)
            error = json.loads(answer[1])["error"]
            assert error["type"] == "invalid_request_error" and error["message"], (body, error)
            assert param is None or error["param"] == param, (body, error)
            assert "/site-packages/" not in answer[1] and "Traceback" not in answer[1], answer[1]
        assert _post_raw(port, "/v1/completions", b"{}")[0] == 400, "a completion needs its prompt"
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


def test_vllm_and_hf_targets_reuse_the_merged_model(tiny_build, fresh_store):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    done = tiny_build.build("target=[ollama,llamacpp,vllm,hf]", store=fresh_store)
    assert done.ran == ["vllm", "hf", "package"], "new targets must not rebuild anything upstream"
    variant = done.out

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
    assert not (variant / "hf" / "model" / "Modelfile").exists()
    loaded = AutoModelForCausalLM.from_pretrained(variant / "hf" / "model")
    assert loaded.config.hidden_size == 256


def test_doit_preview_shows_llamafactorys_samples_with_trained_spans(tiny_build):
    result = tiny_build.build("samples=2", command="preview")
    assert "--- sample 2:" in result.stdout and "--- sample 3:" not in result.stdout
    trained = [span for span in re.findall(r"⟦(.*?)⟧", result.stdout, flags=re.S) if span.strip()]
    assert trained and all(span.rstrip("\n").endswith("<|im_end|>") for span in trained), "answers end with EOS"
    assert "<|im_start|>user" in result.stdout and "input_ids: [" in result.stdout


TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}


def test_eval_and_report_on_a_tool_calling_dataset(tiny_build, tmp_path):
    data = tmp_path / "tools.jsonl"
    cities = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Seoul", "Quito", "Perth"]
    data.write_text("".join(json.dumps({"tools": [TOOL], "messages": [
        {"role": "user", "content": f"Weather in {city}?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]}]}) + "\n"
        for city in cities))
    setup = [f"dataset.path={data}", "dataset.name=tiny_tools", "dataset.holdout=3", "prompt.template=qwen",
             "eval.enabled=true", "eval.quants=[q8_0]", "eval.max_new_tokens=12"]
    done = tiny_build.build(*setup)
    assert done.ran[-3:] == ["eval", "report", "package"] and "quantize" in done.ran
    variant = done.out
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
    named = tiny_build.build(*setup, "target.ollama.model_name=quill")
    assert named.ran == ["ollama", "report", "package"]
    assert "model_name: quill" in (named.out / "report" / "report.md").read_text()
    assert "model_name: null" in (variant / "report" / "report.md").read_text()
    assert "ollama create quill -f Modelfile" in (named.out / "ollama" / "Modelfile").read_text()

    shorter = tiny_build.build(*setup, "eval.max_new_tokens=6")
    assert shorter.ran == ["eval", "report", "package"], "an eval setting re-runs eval (and its report) only"

    both = tiny_build.build(*setup, "eval.max_new_tokens=6,12", command="report")
    assert set(both.ran) == {"package"} and both.stdout.count("report/report.html") == 2   # links only
    sweep = Path(re.search(r"sweep report: (\S+)", both.stdout)[1])
    assert "eval.max_new_tokens" in (sweep.parent / "report.md").read_text()


def test_split_gguf_as_base_input_and_as_output(tiny_build, tmp_path):
    from llmbuild.adapters import gguf_split
    from llmbuild.facts.gguf_files import parse_size, shards_of

    f16 = tiny_build.first.out / "Tiny-Llama-F16.gguf"
    shards_dir = tmp_path / "split-base"
    shards_dir.mkdir()
    shards = gguf_split.split(f16, shards_dir, parse_size("1M"))
    assert len(shards) > 2

    overrides = [o for o in tiny_build.overrides if not o.startswith(("model.path=", "model.name="))]
    done = doit("build", *overrides, f"model.path={shards[0]}", "model.name=Tiny-Split", "quant.split_max_size=1M",
                store=tiny_build.store)
    assert done.ran[0] == "base" and "split" in done.ran and f"split into {len(shards)} files" in done.stdout
    written = sorted((done.out / "split").glob("Tiny-Split-Q4_K_M-*-of-*.gguf"))
    assert len(written) > 1 and shards_of(written[0]) == written


def test_ollama_adapter_target_applies_the_lora_gguf_to_the_base(tiny_build):
    import llama_cpp
    import numpy as np

    done = tiny_build.build("target.ollama.adapter=true", "quant=f16")
    assert "lora_gguf" in done.ran and "ollama" in done.ran
    folder = done.out / "ollama"
    modelfile = (folder / "Modelfile").read_text()
    assert "FROM ./Tiny-Llama-base-F16.gguf" in modelfile and "ADAPTER ./Tiny-Llama-LoRA-F16.gguf" in modelfile
    assert (folder / "Tiny-Llama-base-F16.gguf").is_file() and (folder / "Tiny-Llama-LoRA-F16.gguf").is_file()

    def logits(**paths):
        llm = llama_cpp.Llama(n_ctx=64, logits_all=True, verbose=False, **paths)
        ids = llm.tokenize(b"<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n", special=True)
        llm.eval(ids)
        return np.array(llm.scores[:len(ids)])

    merged = logits(model_path=str(done.out / "Tiny-Llama-F16.gguf"))
    applied = logits(model_path=str(folder / "Tiny-Llama-base-F16.gguf"),
                     lora_path=str(folder / "Tiny-Llama-LoRA-F16.gguf"))
    base = logits(model_path=str(folder / "Tiny-Llama-base-F16.gguf"))
    # the adapter moves the base onto the merged model (f16 rounding apart)
    assert np.abs(applied - merged).max() < 0.1 * np.abs(base - merged).max()


def test_qlora_trains_on_a_4bit_base_and_merges_into_16_bits(tiny_build):
    from safetensors.torch import load_file

    from llmbuild.cli.session import make_plans

    plain, qlora = (make_plans(ROOT, [*tiny_build.overrides, *extra, f"store={tiny_build.store}"])[0]
                    for extra in ((), ("lora.quantization_bit=4",)))
    changed = [slot for slot in plain.nodes if plain.nodes[slot].key != qlora.nodes[slot].key]
    assert changed[:2] == ["train", "merge"] and "base" not in changed and "data" not in changed, \
        "QLoRA changes training and what follows it, not base or data"
    variant = tiny_build.build("lora.quantization_bit=4").out
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
def test_compiled_training_trains_the_same_adapter_as_eager(tiny_build, mode, extra):
    """train.compile: each decoder layer compiled by llmbuild's launcher of LLaMA-Factory, as the YAML's
    "Run by hand" line says, or LLaMA-Factory's torch_compile in the YAML, on a 16-bit or a 4-bit base
    (QLoRA: bitsandbytes' layers inside the compiled ones); a new train key, and (in fp32 on the CPU,
    where inductor rounds nothing differently) the same losses as the eager run."""
    from llmbuild.adapters.llamafactory import logged_losses

    # the HF folder as the only target: the train stage and what the merged model needs, no GGUF
    eager = logged_losses((tiny_build.build(*extra, "target=[hf]").out / "adapter").resolve())
    done = tiny_build.build(f"train.compile={mode}", *extra, "target=[hf]")
    adapter = (done.out / "adapter").resolve()
    text = (adapter.parent / "llamafactory.yaml").read_text()
    log = (adapter.parent / "train.log").read_text()
    if mode == "layers":
        assert "this artifact stays as built): cd train/" in text and \
            "&& CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_EMULATE_PRECISION_CASTS=1 python -m " \
            "llmbuild.adapters.llamafactory_compiled llamafactory.yaml output_dir=$HOME/llmbuild-by-hand/train-" in text
        assert "torch_compile" not in yaml.safe_load(text)
        assert "llmbuild: 2 decoder layers (LlamaDecoderLayer) compiled with torch.compile; the first steps " \
            "compile them\n" in log, "in fp32 (this CPU run) nothing is said of bf16 rounding"
    else:
        assert yaml.safe_load(text)["torch_compile"] is True and "decoder layers" not in log
        assert "&& CUDA_VISIBLE_DEVICES=0 TORCHINDUCTOR_EMULATE_PRECISION_CASTS=1 llamafactory-cli train" in text
    assert done.ran[:2] == ["train", "merge"], "compiling changes the train key and what follows it"
    assert mode != "layers" or "train.compile=layers: each decoder layer compiled" in done.stdout
    compiled = logged_losses(adapter)
    assert len(compiled) == len(eager) == 2
    assert compiled == pytest.approx(eager, abs=1e-3)


def test_a_sweep_builds_every_variant_it_can_and_lists_the_failed_ones(tiny_build, monkeypatch):
    """The first variant fails in its smoke stage: the second is still built, the summary shows it, and
    the failure is listed with the folder its logs were kept in; the command exits non-zero."""
    from llmbuild.errors import StageError
    from llmbuild.stages import smoke

    built = smoke.run

    def fail_the_first(ctx):
        if ctx.cfg.smoke.max_tokens == 6:
            raise StageError("this variant's smoke test fails")
        built(ctx)

    monkeypatch.setattr(smoke, "run", fail_the_first)
    done = tiny_build.build("smoke.max_tokens=6,7", command="sweep", ok=None)
    assert done.returncode != 0 and "Traceback" not in done.output, done.output[-3000:]
    assert "smoke: this variant's smoke test fails" in done.output
    summary = done.stdout[done.stdout.index("| variant"):]
    assert "smoke.max_tokens" in summary and "| 7 |" in summary and "| 6 |" not in summary.split("summary:")[0]
    failed = re.search(r"^1 of 2 variants not built:\n  (\S+): smoke failed; its logs: (\S+)/$", done.stdout, re.M)
    assert failed and Path(failed[2]).is_dir() and (Path(failed[2]) / "stage.log").is_file(), done.stdout[-2000:]
