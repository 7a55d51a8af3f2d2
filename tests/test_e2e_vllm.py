"""vLLM end to end on a tiny tool-calling fine-tune: llm-compressor (in its own environment) writes
fp8 and w4a16 checkpoints, eval measures them against the merged model beside the GGUF ladder, and
a real vLLM server (vLLM's CPU build, in its own environment) serves the 16-bit folder and both
checkpoints through `doit serve`: chat through the build's chat template, the fine-tune's tool call
parsed by the hermes parser, and the prompt token count the merged tokenizer gives."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from llmbuild.facts.tool_envs import QUANT, VLLM
from llmbuild.files import envs

from doit_cli import doit, popen
from tiny_model import build_tiny_llama

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (envs.available(QUANT, ROOT) and envs.available(VLLM, ROOT)),
                                 reason="the quant and vLLM environments are missing: run README's set-up")]

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                        "required": ["city"]}}}
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Seoul", "Quito", "Perth"]
# a tiny random model learns one call by heart: every row asks for Paris's weather
ASKED = "Weather in Paris?"
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'   # the trained answer
TRAINING = ["dataset.holdout=2", "prompt.template=qwen", "train.max_steps=200", "train.learning_rate=5e-3",
            "train.logging_steps=20", "train.per_device_train_batch_size=4", "lora.r=16", "smoke.max_tokens=32",
            f"smoke.questions=[{ASKED}]", "eval.max_new_tokens=32", "target.vllm.max_model_len=1024",
            "+target.vllm.extra_args=[--enforce-eager]"]


ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}   # GiB of KV cache for vLLM's CPU build


def overrides(top: Path, *extra: str) -> list[str]:
    return ["recipe=none", "model=local", f"model.path={top / 'tiny'}", "model.name=Tiny-Tools",
            f"dataset.path={top / 'tools.jsonl'}", "dataset.name=tiny_tools", *TRAINING, "target=[vllm]",
            "target.vllm.quants=[fp8,w4a16]", *extra]


def build(top: Path, *extra: str) -> str:
    return doit("build", *overrides(top, *extra), store=top / "store", db=top / "doit.db").stdout


def serve(top: Path, *extra: str) -> subprocess.Popen:
    return popen("serve", *overrides(top, *extra), store=top / "store", db=top / "doit.db", env=ENV)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    top = tmp_path_factory.mktemp("vllm")
    build_tiny_llama(top / "tiny", special_tokens=("<tool_call>", "</tool_call>"))   # as Qwen2.5's vocabulary has
    _widen_embeddings(top / "tiny")
    rows = [{"tools": [TOOL], "messages": [
        {"role": "user", "content": ASKED if index < 10 else f"Weather in {city}?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris" if index < 10 else city})}}]}]}
        for index, city in enumerate(CITIES + CITIES[:4])]
    (top / "tools.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = build(top)
    variant = Path(re.findall(r"^\S+: outputs in (.+)/$", out, flags=re.M)[-1])
    return top, out, (ROOT / variant).resolve()


def _widen_embeddings(model: Path, factor: float = 5.0) -> None:
    """Scale the tied embeddings up (std 0.02 -> 0.1): with the frozen output layer at its random initial
    scale, no LoRA can make any token more than about 0.3% likely among 49k, and greedy answers stay noise."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(model / "model.safetensors"))
    weights["model.embed_tokens.weight"] = weights["model.embed_tokens.weight"] * factor
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})


def test_checkpoints_are_built_evaluated_and_recommended(built):
    top, out, variant = built
    assert re.search(r"fp8 \(FP8_DYNAMIC, dynamic\): [\d.]+ MiB .*, no calibration", out), out
    assert re.search(r"w4a16 \(W4A16, gptq\): [\d.]+ MiB .*calibrated on 10 training samples", out), out
    for scheme in ("fp8", "w4a16"):
        config = json.loads((variant / f"vllm-{scheme}" / "config.json").read_text())
        assert config["quantization_config"]["quant_method"] == "compressed-tensors"
        assert (variant / f"vllm-{scheme}" / "chat_template.jinja").read_text() == \
            (variant / "vllm" / "chat_template.jinja").read_text()
    result = json.loads((variant / "eval" / "eval.json").read_text())
    by_name = {m["name"]: m for m in result["models"]}
    assert [m["name"] for m in result["models"]][-2:] == ["fp8", "w4a16"] or \
        [m["name"] for m in result["models"]][-2:] == ["w4a16", "fp8"]
    for scheme in ("fp8", "w4a16"):
        model = by_name[scheme]
        assert model["kind"] == "vllm" and 0 <= model["kld"] < 1 and 0 < model["top1"] <= 1
        assert model["file_size"] < by_name["fine-tuned"]["file_size"] and model["perplexity"] > 1
        assert model["checkpoint"]["scheme"] == scheme
    assert by_name["fine-tuned"]["tool_call"]["parsed"] > 0, "the fine-tune calls the tool"
    report = (variant / "report" / "report.md").read_text()
    assert "fp8 (vLLM)" in report and "w4a16 (vLLM)" in report
    assert "For GPU serving with vLLM:" in report or "For GPU serving with vLLM, no checkpoint" in report


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(port: int, body: dict) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("served", ["merged", "fp8", "w4a16"])
def test_vllm_serves_the_format_with_the_trained_template_and_parses_the_tool_call(built, served):
    from transformers import AutoTokenizer

    top, _, variant = built
    port = _free_port()
    server = serve(top, f"target.vllm.serve={served}", f"target.vllm.port={port}")
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as response:
                    models = json.loads(response.read())
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()[-4000:]
                assert time.monotonic() < deadline, "vLLM did not start in 5 minutes"
                time.sleep(1)
        assert [m["id"] for m in models["data"]] == ["Tiny-Tools"]
        messages = [{"role": "user", "content": ASKED}]
        merged = AutoTokenizer.from_pretrained(variant / "merged")
        # as many tokens as the trained call: the tiny model learns the call, and where it stops after it varies
        # with the CPU it trained on; the parser is what is tested here
        call_tokens = len(merged.encode(CALL, add_special_tokens=False))
        called = _post(port, {"model": "Tiny-Tools", "messages": messages, "tools": [TOOL], "tool_choice": "auto",
                              "max_tokens": call_tokens, "temperature": 0})
        message = called["choices"][0]["message"]
        assert message.get("tool_calls"), message   # the hermes parser found <tool_call>...</tool_call>
        (call,) = message["tool_calls"]
        assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {
            "city": "Paris"}
        template = (variant / "vllm" / "chat_template.jinja").read_text()
        expected = merged.apply_chat_template(messages, tools=[TOOL], add_generation_prompt=True, tokenize=True,
                                              chat_template=template, return_dict=False)
        assert called["usage"]["prompt_tokens"] == len(expected), "vLLM prompts as the trained template does"
        plain = _post(port, {"model": "Tiny-Tools", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                             "temperature": 0})
        assert plain["choices"][0]["message"]["role"] == "assistant" and plain["usage"]["completion_tokens"] > 0
    finally:
        server.terminate()
        server.wait(timeout=60)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "vLLM outlived `doit serve`"
