"""Eval building blocks: the held-out split (never trained on), eval cases in the trained chat
format, task metrics, the KLD arithmetic, the quant-ladder graph, and what an eval change rebuilds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from llmbuild.adapters.llama_cpp import chat_formatter
from llmbuild.chat.templates import hf_chat_template
from llmbuild.cli.tasks import stage_context
from llmbuild.config.compose import compose
from llmbuild.dataset import rows as datasets
from llmbuild.dataset.holdout import holdout_indices
from llmbuild.errors import ConfigError, DataError
from llmbuild.evaluation import cases as eval_cases
from llmbuild.evaluation import metrics
from llmbuild.evaluation.scores import Scores, log_softmax
from llmbuild.facts import layout
from llmbuild.plan.graph import build_plan
from llmbuild.stages import data as data_stage

ROOT = Path(__file__).resolve().parent.parent


# --- the held-out split ------------------------------------------------------------------------

def test_holdout_is_a_fraction_or_a_count_and_depends_on_the_seed():
    assert len(holdout_indices(40, 0.1, 0)) == 4
    assert len(holdout_indices(40, 7, 0)) == 7
    assert len(holdout_indices(5, 0.01, 0)) == 1          # a fraction never rounds to nothing
    assert holdout_indices(40, 0, 0) == []
    assert holdout_indices(40, 0.1, 0) == holdout_indices(40, 0.1, 0)
    assert holdout_indices(40, 0.1, 0) != holdout_indices(40, 0.1, 1)
    with pytest.raises(DataError, match="leaves nothing to train on"):
        holdout_indices(3, 3, 0)


def _run_data_stage(tmp_path, *overrides):
    plan = build_plan(compose(ROOT, [f"store={tmp_path / 'store'}", *overrides]), ROOT)
    out = tmp_path / "out"
    out.mkdir()
    data_stage.run(stage_context(plan, "data", out))
    return plan.composed.cfg, out


def test_held_out_rows_are_never_in_the_training_file(tmp_path):
    cfg, out = _run_data_stage(tmp_path)
    trained = [json.loads(line) for line in (out / layout.TRAIN_ROWS).read_text().splitlines()]
    held = [json.loads(line) for line in (out / layout.HELDOUT).read_text().splitlines()]
    source = [json.loads(line) for line in (ROOT / cfg.dataset.path).read_text().splitlines()]
    split = json.loads((out / "split.json").read_text())
    assert len(trained) + len(held) == len(source) == split["rows"] and len(held) == 4
    for index in split["heldout_rows"]:
        row = {**source[index], "tools": []}
        assert row in held and row not in trained
    assert all(row not in held for row in trained) and len(trained) == 36


def test_openai_rows_survive_the_round_trip_through_llamafactorys_layout():
    row = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Weather?"},
                        {"role": "assistant", "content": "", "tool_calls": [
                            {"type": "function", "function": {"name": "get_weather",
                                                              "arguments": json.dumps({"city": "Paris"})}}]},
                        {"role": "tool", "content": "{\"c\": 21}"}, {"role": "assistant", "content": "21 C."}],
           "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}
    lf = datasets.to_llamafactory(datasets.Row(1, row), "openai", "x.jsonl")
    assert datasets.to_openai(lf, "sharegpt") == row
    alpaca = datasets.to_llamafactory(datasets.Row(1, {"instruction": "Add", "input": "1 2", "output": "3"}),
                                      "alpaca", "x.jsonl")
    assert datasets.to_openai(alpaca, "alpaca")["messages"] == [{"role": "user", "content": "Add\n1 2"},
                                                                {"role": "assistant", "content": "3"}]


# --- cases in the trained format -----------------------------------------------------------------

def test_a_case_is_the_generation_prompt_and_the_answer_up_to_its_end_token():
    source = (ROOT / "templates" / "chat" / "chatml.jinja").read_text()
    render = chat_formatter(hf_chat_template(source, "Be brief.", "chat/chatml.jinja"), "", "<|im_end|>")
    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                          {"role": "user", "content": "Name?"}, {"role": "assistant", "content": "Quill."}]}]
    (case,) = eval_cases.build(rows, render, ["<|im_end|>"])
    assert case.prompt_text.endswith("<|im_start|>user\nName?<|im_end|>\n<|im_start|>assistant\n")
    assert "Hello.<|im_end|>" in case.prompt_text and case.prompt_text.startswith("<|im_start|>system\nBe brief.")
    assert case.answer_text == "Quill.<|im_end|>" and case.reference == "Quill." and case.prompt == "Name?"


# --- task metrics --------------------------------------------------------------------------------

def test_exact_match_and_rouge_l():
    assert metrics.exact_match("  I'm  Quill. ", "I'm Quill.")
    assert not metrics.exact_match("I'm Quill", "I'm Quill.")
    assert metrics.rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    assert metrics.rouge_l("completely different", "the cat") == 0.0
    # LCS "the cat the mat" (4) of 6 and 5 words: P = 4/6, R = 4/5
    expected = 2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5)
    assert metrics.rouge_l("the cat sat on the mat", "the black cat the mat") == pytest.approx(expected)


def test_tool_calls_parse_in_hermes_and_bare_json_forms():
    hermes = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert metrics.parse_tool_calls(hermes) == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert metrics.parse_tool_calls('{"name": "f", "parameters": {"x": 1}}') == [{"name": "f", "arguments": {"x": 1}}]
    assert metrics.parse_tool_calls("It is sunny.") is None
    assert metrics.parse_tool_calls("<tool_call>{not json}</tool_call>") is None


def test_scores_are_fractions_over_the_cases_they_apply_to():
    plain = eval_cases.Case("q", "", "", "Quill.", [])
    call = eval_cases.Case("q", "", "", "", [{"name": "get_weather", "arguments": {"city": "Paris"}}])
    outputs = ["Quill.", '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>',
               '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>', "no call"]
    result = metrics.score(outputs, [plain, call, call, call])
    assert result["exact_match"] == 1.0 and result["rouge_l"] == 1.0
    assert result["tool_call"] == {"parsed": pytest.approx(2 / 3), "name": pytest.approx(2 / 3),
                                   "arguments": pytest.approx(1 / 3)}


# --- NLL, KLD, top-1 ---------------------------------------------------------------------------

def test_nll_counts_answer_tokens_only_and_kld_matches_its_definition():
    rng = np.random.default_rng(0)
    ids = [0, 1, 2, 3, 1]
    ref = log_softmax(rng.normal(size=(4, 5)))
    other = log_softmax(rng.normal(size=(4, 5)))
    same = Scores()
    same.add_logprobs(ids, ref, answer_start=3, reference=ref)
    assert same.answer_tokens == 2 and same.nll == pytest.approx(-(ref[2, 3] + ref[3, 1]))
    result = same.result([], 0)
    assert result.kld == pytest.approx(0.0, abs=1e-12) and result.top1 == 1.0
    assert result.perplexity == pytest.approx(math.exp(same.nll / 2))
    differ = Scores()
    differ.add_logprobs(ids, other, answer_start=3, reference=ref)
    expected = np.mean([(np.exp(ref[i]) * (ref[i] - other[i])).sum() for i in range(4)])
    assert differ.result([], 0).kld == pytest.approx(expected) and differ.result([], 0).kld > 0
    assert differ.result([], 0).top1 == np.mean(ref.argmax(1) == other.argmax(1))


# --- the graph ---------------------------------------------------------------------------------

def test_the_quant_ladder_shares_artifacts_with_variants_of_that_quant(tmp_path):
    store = f"store={tmp_path}"
    ladder = build_plan(compose(ROOT, [store, "eval.quants=[q4_k_m,q5_k_m,q8_0]"]), ROOT)
    # the demo also compares q4_k_m and q5_k_m without their importance matrix (eval.compare_imatrix)
    assert {s for s in ladder.nodes if s.startswith("quantize@")} == {
        "quantize@q5_k_m", "quantize@q8_0", "quantize@q4_k_m-no-imatrix", "quantize@q5_k_m-no-imatrix"}
    q8 = build_plan(compose(ROOT, [store, "quant=q8_0"]), ROOT)
    assert ladder.nodes["quantize@q8_0"].key == q8.nodes["quantize"].key
    assert ladder.nodes["quantize@q8_0"].overrides == (("quant.type", "q8_0"),)
    assert set(ladder.nodes["eval"].payload["upstream"]) >= {"quantize", "quantize@q5_k_m", "quantize@q8_0"}


def test_without_eval_there_is_no_eval_or_report_stage(tmp_path):
    plan = build_plan(compose(ROOT, [f"store={tmp_path}", "eval.enabled=false"]), ROOT)
    assert "eval" not in plan.nodes and "report" not in plan.nodes and "smoke" in plan.nodes


@pytest.mark.parametrize("override, message", [
    ("eval.quants=[q4_k_x]", "eval.quants\\[0\\]"),
    ("dataset.holdout=0", "eval needs held-out rows"),
    ("dataset.holdout=2.5", "a fraction below 1 or a whole number"),
    ("eval.max_rows=0", "eval.max_rows"),
])
def test_bad_eval_settings_are_clear_errors(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        compose(ROOT, [f"store={tmp_path}", override])


def test_a_workers_peak_memory_is_its_own_not_its_parents():
    import subprocess
    import sys

    held = np.ones(400 * 2**20 // 8)  # the parent holds 400 MiB, as a doit process that trained may
    code = "from llmbuild.adapters.eval_worker import peak_rss_bytes; print(peak_rss_bytes())"
    child = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0 < child < 300 * 2**20 and held.sum() > 0


# --- the worker's request and answer ------------------------------------------------------------

def test_the_worker_reads_the_request_and_writes_the_answer_the_stage_reads(tmp_path, monkeypatch):
    """Both sides of the process boundary use evaluation/protocol.py's records: what the stage
    writes is what the worker reads, and the worker's answer reads back into the same record."""
    from llmbuild.adapters import eval_worker
    from llmbuild.evaluation.protocol import Answer, Request
    from llmbuild.evaluation.roster import HF

    case = eval_cases.Case("Name?", "<user>Name?</user>", "Quill.", "Quill.", [], generate=True)
    request = Request(kind=HF, path=tmp_path / "merged", cases=[case], stops=["</s>"], max_new_tokens=8, n_ctx=256,
                      n_gpu_layers=0, reference_logprobs=tmp_path / "reference")
    request.write(tmp_path / "request.json")
    written = json.loads((tmp_path / "request.json").read_text())
    assert written["path"] == str(tmp_path / "merged") and written["save_logprobs"] is None
    assert written["cases"] == [case.to_json()]
    seen = []

    def run_hf(received):
        seen.append(received)
        scores = Scores()
        scores.add_logprobs([0, 1], log_softmax(np.zeros((1, 3))), answer_start=1, reference=None)
        return scores.result(["Quill."], 1024)

    monkeypatch.setattr(eval_worker, "run_hf", run_hf)
    assert eval_worker.main(["worker", str(tmp_path / "request.json"), str(tmp_path / "answer.json")]) == 0
    assert seen == [request]
    answer = Answer.read(tmp_path / "answer.json")
    assert answer.answers == ["Quill."] and answer.answer_tokens == 1 and answer.kld is None
    assert answer.nll == pytest.approx(math.log(3)) and answer.case_tokens == [1] and answer.peak_rss_bytes == 1024


def test_the_kld_budget_has_one_owner(tmp_path):
    """eval.recommend_kld's default, what validation says of it and what the report falls back on
    for an eval.json without it are the same number."""
    from llmbuild.evaluation.results import Settings
    from llmbuild.facts.quant_types import RECOMMEND_KLD

    store = f"store={tmp_path}"
    assert compose(ROOT, [store]).cfg.eval.recommend_kld == RECOMMEND_KLD   # no config file sets it
    assert Settings(max_new_tokens=1, kld_reference="f16").recommend_kld == RECOMMEND_KLD
    with pytest.raises(ConfigError, match=f"{RECOMMEND_KLD} is the default"):
        compose(ROOT, [store, "eval.recommend_kld=0"])


def test_intervals_are_the_mean_plus_minus_1_96_standard_errors():
    from llmbuild.evaluation.scores import interval, share_interval

    values = [0.1, 0.3, 0.2, 0.4]     # mean 0.25, sample variance 0.016667, se 0.064550
    low, high = interval(sum(values), sum(v * v for v in values), len(values))
    assert low == pytest.approx(0.25 - 1.959964 * 0.0645497, abs=1e-6)
    assert high == pytest.approx(0.25 + 1.959964 * 0.0645497, abs=1e-6)
    assert interval(0.5, 0.25, 1) is None                        # one value has no spread
    # 90 of 100 tokens agree: p 0.9, se sqrt(0.9 * 0.1 / 99)
    low, high = share_interval(90, 100)
    assert (low, high) == pytest.approx((0.9 - 1.959964 * 0.0301511, 0.9 + 1.959964 * 0.0301511), abs=1e-6)
    assert share_interval(100, 100) == [1.0, 1.0]                # kept inside [0, 1]


def test_scores_give_kld_top1_and_perplexity_intervals():
    import numpy as np

    from llmbuild.evaluation.scores import Scores, log_softmax

    rng = np.random.default_rng(0)
    reference = log_softmax(rng.normal(size=(50, 8)))
    noisy = log_softmax(reference + rng.normal(scale=0.3, size=(50, 8)))
    ids = list(rng.integers(0, 8, size=51))
    scores = Scores()
    scores.add_logprobs(ids, noisy, 10, reference)
    answer = scores.result([], 0)
    kld = (np.exp(reference) * (reference - noisy)).sum(axis=-1)
    assert answer.kld == pytest.approx(kld.mean())
    assert answer.kld_interval[0] < answer.kld < answer.kld_interval[1]
    assert answer.kld_interval[1] - answer.kld == pytest.approx(1.959964 * kld.std(ddof=1) / np.sqrt(50))
    assert answer.top1_interval[0] <= answer.top1 <= answer.top1_interval[1]
    assert answer.perplexity_interval[0] < answer.perplexity < answer.perplexity_interval[1]
    assert answer.compared_tokens == 50
