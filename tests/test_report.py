"""The report renderer: tables, verdict, charts, a self-contained HTML page that headless Chromium
renders (Debian's `chromium`; README set-up installs it), and the sweep comparison."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from llmbuild.errors import StageError
from llmbuild.evaluation.results import EvalResults
from llmbuild.evaluation.results import load as load_eval
from llmbuild.facts.quant_types import RECOMMEND_KLD
from llmbuild.files.templates import TemplateDir
from llmbuild.report import charts, write_sweep_report, write_variant_report
from llmbuild.report.variant import VariantReport
from llmbuild.report.write import metrics_table, verdict

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20


def model(name, kind, quant, size, ppl, kld=None, top1=None, tool=None, rouge=0.5):
    return {"name": name, "kind": kind, "quant": quant, "file_size": size * MIB, "nll": 1.0, "perplexity": ppl,
            "answer_tokens": 40, "kld": kld, "top1": top1, "exact_match": None if tool else 0.25,
            "rouge_l": None if tool else rouge, "tool_call": tool, "prompt_tokens_per_second": 250.0,
            "generation_tokens_per_second": 40.0, "peak_rss_bytes": 300 * MIB}


EVAL = {
    "holdout": {"rows": 2, "size": 0.1, "seed": 0},
    "settings": {"max_new_tokens": 64, "kld_reference": "f16", "recommend_kld": 0.05},
    "shipped_quant": "q4_k_m",
    "models": [model("base", "hf", None, 500, 90.0, rouge=0.1), model("fine-tuned", "hf", None, 500, 3.0),
               model("f16", "gguf", "f16", 258, 3.0, 0.0, 1.0), model("q8_0", "gguf", "q8_0", 138, 3.01, 0.004, 0.99),
               model("q5_k_m", "gguf", "q5_k_m", 110, 3.1, 0.03, 0.95),
               model("q4_k_m", "gguf", "q4_k_m", 100, 3.3, 0.08, 0.88)],
    "samples": [{"prompt": "Who are you?", "reference": "I'm Quill.",
                 "answers": {"base": "I am <b>Elena</b>", "fine-tuned": "I'm Quill.", "f16": "I'm Quill.",
                             "q8_0": "I'm Quill.", "q5_k_m": "I'm Quill | a quill.",
                             "q4_k_m": "<tool_call>{\"name\": \"x\"}</tool_call>"}}],
}


def results(data: dict = EVAL) -> EvalResults:
    """eval.json's content as the report reads it."""
    return EvalResults.from_json(data)


def tool_eval() -> dict:
    """A tool-calling run (the glaive tool-calling dataset): tool-call scores instead of exact match and ROUGE-L."""
    result = copy.deepcopy(EVAL)
    scores = [(0.0, 0.0, 0.0), (1.0, 0.75, 0.5), (1.0, 0.75, 0.5), (1.0, 0.75, 0.5), (1.0, 0.75, 0.25),
              (0.75, 0.5, 0.25)]
    for m, (parsed, name, arguments) in zip(result["models"], scores, strict=True):
        m.update(exact_match=None, rouge_l=None, tool_call={"parsed": parsed, "name": name, "arguments": arguments})
    result["samples"] = [{"prompt": "Weather in Paris?",
                          "reference": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                                       '</tool_call>',
                          "answers": {m["name"]: '<tool_call>\n{"name": "get_weather"}\n</tool_call>'
                                      for m in result["models"]}}]
    return result


def external_references(page: str) -> list[str]:
    """Every src/href/CSS url() that is not a data: URI or an in-page #anchor, and any http(s) text."""
    refs = re.findall(r"""(?:src|href|srcset|action|poster)\s*=\s*["']?([^"'\s>]*)""", page, re.I)
    refs += re.findall(r"""url\(\s*["']?([^"')]*)""", page, re.I) + re.findall(r"@import[^;]*", page, re.I)
    refs = [r for r in refs if not r.startswith(("data:", "#"))]
    return refs + re.findall(r"(?:https?:)?//[\w.-]+\.\w+", page)


def report(eval_result=EVAL, **changes) -> VariantReport:
    values = dict(variant="Tiny, LoRA r=8", config_yaml="model:\n  name: Tiny\n",
                  stages=[{"stage": "train", "key": "a" * 16, "seconds": 12.5, "built_at": "2026-11-23T10:00:00+0000"},
                          {"stage": "eval", "key": "b" * 16, "seconds": None, "built_at": None}],
                  train_losses=[(1, 3.0), (2, 2.1), (3, 1.2)],
                  eval=None if eval_result is None else results(eval_result),
                  smoke=[{"question": "Hi?", "answer": "Hello.", "tokens_per_second": 50.0}])
    values.update(changes)
    return VariantReport(**values)


def test_verdict_says_whether_the_fine_tune_helped_and_which_quant_to_ship():
    lines = verdict(results())
    assert lines[0].startswith("Fine-tuning lowered held-out perplexity from 90.00 to 3.00 (-97%)")
    assert "Recommended quant: q5_k_m (110.0 MiB)" in lines[1] and "vs f16 stays below 0.05" in lines[1]
    assert "shipped q4_k_m has mean KLD 0.0800, above 0.05" in lines[2]
    worse = copy.deepcopy(EVAL)
    worse["models"][1]["perplexity"] = 120.0
    assert "RAISED" in verdict(results(worse))[0]
    unmeasured = copy.deepcopy(EVAL)  # top-1 not measured (e.g. no answer tokens): no crash, "—"
    for m in unmeasured["models"]:
        m["top1"] = None
    lines = verdict(results(unmeasured))
    assert "top-1 agreement —" in lines[1] and lines[2].endswith("has mean KLD 0.0800, above 0.05.")
    strict = copy.deepcopy(EVAL)
    strict["settings"]["recommend_kld"] = 0.0
    assert ("No quant has a KLD whose 95% upper bound is below 0.0 vs f16: none is recommended; ship f16 (258.0 MiB)"
            in verdict(results(strict))[1])
    only_reference = copy.deepcopy(EVAL)  # random weights: every quant far off, f16 trivially at 0
    only_reference["settings"]["recommend_kld"] = 0.001
    assert verdict(results(only_reference))[1].startswith("No quant has a KLD whose 95% upper bound is below 0.001")
    assert "did not run" in verdict(None)[0]


def test_metrics_table_shows_missing_values_and_drops_columns_nobody_has():
    header, rows = metrics_table(results())
    assert "tool call parsed" not in header and "KLD (95%)" in header
    assert rows[0][0] == "base" and rows[0][header.index("KLD (95%)")] == "—"
    assert rows[-1][0] == "q4_k_m (shipped)" and rows[-1][header.index("top-1 (95%)")] == "88.0%"
    tools = copy.deepcopy(EVAL)
    for m in tools["models"]:
        m.update(exact_match=None, rouge_l=None, tool_call={"parsed": 1.0, "name": 0.5, "arguments": 0.25})
    header, rows = metrics_table(results(tools))
    assert {"tool call parsed", "right name", "right args"} <= set(header) and "ROUGE-L" not in header
    assert rows[0][header.index("right args")] == "25.0%"


def test_charts_are_pngs_and_the_same_data_gives_the_same_bytes():
    for make in (lambda: charts.loss_curve([(1, 3.0), (2, 1.0)]), lambda: charts.quant_ladder(results())):
        first, second = make(), make()
        assert first.startswith(b"\x89PNG") and first == second
    assert charts.loss_curve([]) is None


def test_the_html_is_self_contained_and_escapes_answers(tmp_path):
    md, html = write_variant_report(tmp_path, report(), TemplateDir(ROOT))
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 2 and 'id="metrics"' in page and 'id="stages"' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert external_references(page) == []
    assert "&lt;tool_call&gt;" in page and "<b>Elena</b>" not in page and "<tool_call>" not in page
    assert "<details>" in page and "model:\n  name: Tiny" in page
    assert "tool call parsed" not in page and "<th>ROUGE-L</th>" in page
    text = md.read_text()
    assert text.startswith("# Tiny, LoRA r=8\n")
    assert "![training loss](loss.png)" in text
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "ladder.png").is_file()
    assert "| q4_k_m (shipped) |" in text and "Recommended quant: q5_k_m" in text
    # Markdown renderers would take <tool_call> for a tag and hide it; a | would end the cell
    assert "| q4_k_m | &lt;tool_call&gt;{\"name\": \"x\"}&lt;/tool_call&gt; |" in text
    assert "| base | I am &lt;b&gt;Elena&lt;/b&gt; |" in text and "| q5_k_m | I'm Quill \\| a quill. |" in text


def test_a_tool_calling_run_shows_tool_call_scores(tmp_path):
    md, html = write_variant_report(tmp_path, report(tool_eval()), TemplateDir(ROOT))
    page = html.read_text()
    assert "<th>tool call parsed</th><th>right name</th><th>right args</th>" in page and "<th>ROUGE-L</th>" not in page
    assert "<td>q4_k_m (shipped)</td>" in page and "<td class=\"num\">25.0%</td>" in page
    assert "&lt;tool_call&gt;" in page and "<tool_call>" not in page and external_references(page) == []
    assert "| right args |" in md.read_text() and "<tool_call>" not in md.read_text()


def test_a_build_without_eval_still_reports_training_and_stages(tmp_path):
    md, html = write_variant_report(tmp_path, report(None), TemplateDir(ROOT))
    page = html.read_text()
    assert "Evaluation did not run" in page and 'id="metrics"' not in page and 'id="stages"' in page
    assert page.count("data:image/png;base64,") == 1 and not (tmp_path / "ladder.png").exists()
    assert "## Training loss" in md.read_text() and "## Metrics" not in md.read_text()


def test_bad_eval_results_are_a_clear_error(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text('{"models": []}')
    with pytest.raises(StageError, match="eval results without holdout"):
        load_eval(path)
    stale = copy.deepcopy(EVAL)
    del stale["settings"]["kld_reference"], stale["models"][2]["top1"], stale["samples"][0]["reference"]
    path.write_text(json.dumps(stale))
    with pytest.raises(StageError, match=r"without settings.kld_reference, models\[2\].top1, samples\[0\].reference; "
                                         r"rebuild the eval stage"):
        load_eval(path)
    path.write_text("[]")
    with pytest.raises(StageError, match="a JSON list, not an object"):
        load_eval(path)
    path.write_text(json.dumps(EVAL))
    assert load_eval(path) == results()
    shapeless = copy.deepcopy(EVAL)
    shapeless["models"][0] = ["base"]
    path.write_text(json.dumps(shapeless))
    with pytest.raises(StageError, match="eval results of another shape .*; rebuild the eval stage"):
        load_eval(path)


def test_eval_json_keeps_its_shape_and_reads_back_into_the_same_records(tmp_path):
    """The records write the JSON that earlier builds wrote (the same keys, nested objects for tool
    calls and preference metrics) and read it back unchanged; keys a later llmbuild adds are ignored."""
    from llmbuild.evaluation.results import Preference, ToolCalls, write

    found = results(tool_eval())
    assert found.tuned.name == "fine-tuned"
    assert found.tuned.tool_call == ToolCalls(parsed=1.0, name=0.75, arguments=0.5)
    preferred = Preference(pairs=4, prefers_chosen=0.75, margin=1.5, reward_accuracy=0.5, reward_margin=0.2)
    found = replace(found, models=[replace(m, preference=preferred) if m.name == "fine-tuned" else m
                                   for m in found.models])
    path = tmp_path / "eval.json"
    write(path, found)
    data = json.loads(path.read_text())
    assert list(data["models"][0]) == ["name", "kind", "quant", "file_size", "nll", "perplexity", "answer_tokens",
                                       "kld", "top1", "exact_match", "rouge_l", "tool_call",
                                       "prompt_tokens_per_second", "generation_tokens_per_second", "peak_rss_bytes",
                                       "quantized", "preference", "checkpoint", "perplexity_interval",
                                       "kld_interval", "top1_interval", "compared_tokens", "imatrix"]
    assert data["models"][1]["tool_call"] == {"parsed": 1.0, "name": 0.75, "arguments": 0.5}
    assert data["models"][1]["preference"]["prefers_chosen"] == 0.75 and data["models"][0]["preference"] is None
    assert load_eval(path) == found
    data["models"][0]["added_later"] = 1
    data["added_later"] = {"x": 1}
    path.write_text(json.dumps(data))
    assert load_eval(path) == found


def test_eval_json_of_an_earlier_llmbuild_reads_with_the_defaults_of_today():
    """Fields that earlier files lack read as the records' defaults: the KLD budget is eval.recommend_kld's
    default (facts/quant_types.py), the kind of data is chat."""
    old = copy.deepcopy(EVAL)
    del old["settings"]["recommend_kld"]
    for m in old["models"]:
        del m["answer_tokens"]
    found = results(old)
    assert found.settings.recommend_kld == RECOMMEND_KLD and found.data == "chat" and found.method == "sft"
    assert found.models[0].answer_tokens is None and found.models[0].quantized is None
    assert f"vs f16 stays below {RECOMMEND_KLD}" in verdict(found)[1]


def test_sweep_report_compares_variants(tmp_path):
    other = copy.deepcopy(EVAL)
    other["models"][-1]["perplexity"] = 2.9
    variants = [report(variant="demo_lora.r-8_quant-q4_k_m", config_yaml="lora:\n  r: 8\n", swept={"quant": "q4_k_m"}),
                report(other, variant="demo_lora.r-16_quant-q8_0", config_yaml="lora:\n  r: 16\n",
                       swept={"quant": "q8_0"}),
                report(None, variant="demo_lora.r-32_quant-q8_0", config_yaml="lora:\n  r: 32\n")]
    md, html = write_sweep_report(tmp_path, variants, ["lora.r", "quant"], TemplateDir(ROOT))
    text = md.read_text()
    assert "| variant | lora.r | quant | fine-tuned ppl | shipped ppl |" in text
    # swept values: from the overrides when given, else from the resolved config; no eval, no numbers
    assert "| demo_lora.r-16_quant-q8_0 | 16 | q8_0 | 3.00 | 2.90 |" in text
    assert "| demo_lora.r-32_quant-q8_0 | 32 | — | — | — |" in text
    page = html.read_text()
    assert "data:image/png;base64," in page and 'id="variants"' in page and external_references(page) == []
    assert charts.sweep_perplexity(["a", "b"], [3.3, 2.9]).startswith(b"\x89PNG")


@pytest.mark.slow   # starts Chromium
def test_headless_chromium_renders_the_report(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: apt-get install chromium (README.md, Set up)"
    _, html = write_variant_report(tmp_path, report(), TemplateDir(ROOT))
    shot = tmp_path / "shot.png"
    run = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
                          html.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert shot.is_file(), f"chromium wrote no screenshot (exit {run.returncode}): {run.stderr[-2000:]}"
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    not_white = sum(count for count, rgb in colours if rgb != (255, 255, 255))
    assert len(colours) > 50, "the page rendered (almost) one colour: blank"
    assert not_white > 0.05 * image.width * image.height
    dom = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          f"--user-data-dir={tmp_path / 'profile'}", html.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False).stdout
    assert '<table id="metrics">' in dom and '<table id="stages">' in dom and "q4_k_m (shipped)" in dom


def test_quantizer_fallbacks_are_shown_and_explained_for_the_shipped_quant():
    header, _ = metrics_table(results())
    assert "fallback tensors" not in header, "eval.json without quantize records: no column"
    fell_back = copy.deepcopy(EVAL)
    by_name = {m["name"]: m for m in fell_back["models"]}
    by_name["q4_k_m"]["quantized"] = {"quantized_tensors": 211, "types": {"q5_0": 166, "q8_0": 15},
                                      "fallback": {"q5_0": 150, "q8_0": 30}}
    by_name["q8_0"]["quantized"] = {"quantized_tensors": 211, "types": {"q8_0": 211}, "fallback": {}}
    header, rows = metrics_table(results(fell_back))
    column = header.index("fallback tensors")
    shown = {row[0]: row[column] for row in rows}
    assert shown["q4_k_m (shipped)"] == "180 of 211 (q5_0 150, q8_0 30)"
    assert shown["q8_0"] == "0 of 211" and shown["base"] == "—"
    assert ("In the shipped q4_k_m, llama.cpp fell back to other types for 180 of 211 quantized tensors "
            "(q5_0 150, q8_0 30):") in verdict(results(fell_back))[-1]
    assert not any("fell back" in line for line in verdict(results()))


def test_the_report_says_what_the_train_stage_chose(tmp_path):
    """The batch chosen from the memory model and the padding and packing decision, as the train log
    said them (the train artifact's manifest record), appear in both reports."""
    from llmbuild.stages.report import training_choices

    train = tmp_path / "train"
    train.mkdir()
    (train / "manifest.json").write_text(json.dumps({"record": {
        "batch": {"why": "batch 4 x accumulation 2 (effective 8), no gradient checkpointing"},
        "padding": {"why": "44.0% of tokens would be padding in padded batches, 4.3% packed: packing"}}}))
    lines = training_choices(train)
    assert lines == ["Batch: batch 4 x accumulation 2 (effective 8), no gradient checkpointing",
                     "Padding: 44.0% of tokens would be padding in padded batches, 4.3% packed: packing"]
    out = tmp_path / "out"
    out.mkdir()
    md, html = write_variant_report(out, report(training=lines), TemplateDir(ROOT))
    assert all(line in md.read_text() for line in lines) and f"<p>{lines[0]}</p>" in html.read_text()
    assert training_choices(tmp_path) == [], "an artifact without a record shows nothing"


def test_the_verdict_says_whether_preference_tuning_moved_the_model():
    from llmbuild.evaluation.results import Preference

    def scores(prefers, accuracy=None):
        return Preference(pairs=4, prefers_chosen=prefers, margin=0.1, reward_accuracy=accuracy,
                          reward_margin=None if accuracy is None else 0.25)

    found = results()
    found = replace(found, method="dpo", data="pairs", preference_reference="base", models=[
        replace(m, preference=scores(0.5) if m.name == "base" else scores(0.75, 1.0)) for m in found.models])
    lines = verdict(found)
    assert lines[0] == ("DPO raised the share of 4 held-out pairs in which the model prefers the chosen answer "
                        "(mean log-probability per token) from 50% (base) to 75%.")
    assert lines[1].startswith("Against base, the tuned model's implicit reward ranks the chosen answer higher in "
                               "100% of held-out cases (reward margin +0.250)")
    assert "perplexity on the chosen answers of held-out pairs" in lines[2]


def test_the_recommendation_takes_the_upper_end_of_the_kld_interval_and_shows_the_imatrix_gain():
    noisy = copy.deepcopy(EVAL)
    for m in noisy["models"]:
        if m["name"] == "q5_k_m":   # mean 0.03 is below the budget, but the interval reaches past it
            m.update(kld_interval=[0.01, 0.06], compared_tokens=300)
        if m["name"] == "q4_k_m":
            m.update(kld=0.04, kld_interval=[0.035, 0.045], compared_tokens=4096, imatrix=True)
    plain = {**copy.deepcopy(next(m for m in noisy["models"] if m["name"] == "q4_k_m")),
             "name": "q4_k_m-no-imatrix", "kld": 0.06, "kld_interval": [0.055, 0.065], "imatrix": False}
    noisy["models"].append(plain)
    lines = verdict(results(noisy))
    assert lines[1].startswith("Recommended quant: q4_k_m") and "0.0350–0.0450" in lines[1]
    assert "4,096 tokens" in lines[1]
    assert any("q4_k_m with its importance matrix: KLD 0.0400 against 0.0600 without (33% lower; the 95% "
               "intervals do not overlap)" in line for line in lines)
    header, rows = metrics_table(results(noisy))
    row = next(r for r in rows if r[0].startswith("q5_k_m"))
    assert row[header.index("KLD (95%)")] == "0.0300 (0.0100–0.0600)" and row[header.index("KLD tokens")] == "300"
