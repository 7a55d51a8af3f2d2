"""report.md (charts as PNG files beside it) and a self-contained report.html (styles inline,
charts as data: URIs, no script, no external URL), for one build or for a sweep."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from ..evaluation.results import VLLM
from ..facts.layout import REPORT_HTML, REPORT_MD, REPORT_TEMPLATES, SWEEP_REPORT_TEMPLATES
from ..facts.quant_types import fallback_text
from ..facts.train_methods import ROW_NOUNS
from ..files.templates import TemplateDir
from . import charts
from .variant import VariantReport

COLUMNS = (  # header, field, how to show it
    ("NLL", "nll", "{:.3f}"), ("perplexity", "perplexity", "{:.2f}"), ("KLD", "kld", "{:.4f}"),
    ("top-1", "top1", "pct"), ("exact", "exact_match", "pct"), ("ROUGE-L", "rouge_l", "{:.2f}"),
    ("tool call parsed", ("tool_call", "parsed"), "pct"), ("right name", ("tool_call", "name"), "pct"),
    ("right args", ("tool_call", "arguments"), "pct"),
    ("prefers chosen", ("preference", "prefers_chosen"), "pct"), ("chosen - rejected log-prob",
                                                                    ("preference", "margin"), "{:+.2f}"),
    ("reward accuracy", ("preference", "reward_accuracy"), "pct"),
    ("reward margin", ("preference", "reward_margin"), "{:+.3f}"),
    ("prompt tok/s", "prompt_tokens_per_second", "{:.0f}"), ("gen tok/s", "generation_tokens_per_second", "{:.1f}"),
    ("size MiB", "file_size", "mib"), ("peak RSS MiB", "peak_rss_bytes", "mib"),
    ("fallback tensors", "quantized", "fallback"),
)


def _value(model: dict[str, Any], field) -> Any:
    if isinstance(field, tuple):
        outer = model.get(field[0])
        return outer.get(field[1]) if outer else None
    return model.get(field)


def _show(value: Any, how: str) -> str:
    if value is None:
        return "—"
    if how == "pct":
        return f"{value:.1%}"
    if how == "mib":
        return f"{value / 2**20:.1f}"
    if how == "fallback":
        return fallback_text(value)
    return how.format(value)


def metrics_table(eval_result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows, leaving out columns no model has (e.g. tool calls on a chat dataset)."""
    models = eval_result["models"]
    columns = [c for c in COLUMNS if any(_value(m, c[1]) is not None for m in models)]
    shipped = eval_result["shipped_quant"]
    rows = [[charts.shown_name(m) + (" (shipped)" if m["name"] == shipped else "")]
            + [_show(_value(m, f), how) for _, f, how in columns] for m in models]
    return ["model"] + [c[0] for c in columns], rows


# The fallback when eval.json predates settings.recommend_kld (eval.recommend_kld sets it). On
# Llama-3-8B, llama.cpp's own KLD table (tools/perplexity/README.md) has every K-quant from Q4_K_S
# up below 0.05 (Q4_K_M 0.031, Q5_K_M 0.011, Q6_K 0.005, Q8_0 0.001) and the legacy 4-bit and all
# 3-bit and smaller types above it (Q4_0 0.072, Q3_K_M 0.10, Q2_K 0.45): 0.05 passes the quants
# commonly shipped as "close to f16" and rejects those whose answers visibly change. Small models
# quantize worse, so their ladder may recommend nothing below 8 bits; that is the point of measuring.
RECOMMEND_KLD = 0.05


def verdict(eval_result: dict[str, Any] | None) -> list[str]:
    """Plain sentences: was the fine-tune worth it, and which quant to ship."""
    if eval_result is None:
        return ["Evaluation did not run (eval.enabled=false): no held-out metrics, no quant recommendation."]
    by_name = {m["name"]: m for m in eval_result["models"]}
    lines = []
    base, tuned = by_name.get("base"), by_name.get("fine-tuned")
    what = {"text": "perplexity on held-out text", "pairs": "perplexity on the chosen answers of held-out pairs"}.get(
        eval_result.get("data", "chat"), "held-out perplexity")
    lines += _preference_verdict(eval_result, by_name)
    if base and tuned and base["perplexity"] and tuned["perplexity"]:
        change = tuned["perplexity"] / base["perplexity"] - 1
        better = "lowered" if change < 0 else "RAISED"
        method = eval_result.get("method", "sft")
        doing = "Continued pretraining" if method == "pt" else "Fine-tuning" if method == "sft" else method.upper()
        lines.append(f"{doing} {better} {what} from {base['perplexity']:.2f} to "
                     f"{tuned['perplexity']:.2f} ({change:+.0%}) on {eval_result['holdout']['rows']} held-out "
                     f"{ROW_NOUNS.get(eval_result.get('data'), 'rows')}.")
    elif tuned and tuned["perplexity"]:
        lines.append(f"Fine-tuned held-out perplexity {tuned['perplexity']:.2f} (the base model was not evaluated).")
    threshold = eval_result["settings"].get("recommend_kld", RECOMMEND_KLD)
    reference = eval_result["settings"]["kld_reference"]
    # the reference passes its own test trivially: it is the fallback, not a recommendation
    ggufs = [m for m in eval_result["models"]
             if m["kind"] == "gguf" and m["kld"] is not None and m["name"] != reference]
    good = sorted((m for m in ggufs if m["kld"] < threshold), key=lambda m: m["file_size"] or 0)
    shipped = by_name.get(eval_result["shipped_quant"])
    if good:
        pick = good[0]
        lines.append(f"Recommended quant: {pick['name']} ({_show(pick['file_size'], 'mib')} MiB), the smallest with "
                     f"mean KLD below {threshold} vs {reference} "
                     f"(KLD {pick['kld']:.4f}, top-1 agreement {_show(pick['top1'], 'pct')}).")
    elif ggufs:
        kept = by_name.get(reference)
        size = f" ({_show(kept['file_size'], 'mib')} MiB)" if kept else ""
        lines.append(f"No quant has mean KLD below {threshold} vs {reference}: none is recommended; ship "
                     f"{reference}{size} or add larger types to eval.quants.")
    if shipped and shipped["kld"] is not None and shipped["kld"] >= threshold:
        changed = (f": it changes the top token on {1 - shipped['top1']:.1%} of positions"
                   if shipped["top1"] is not None else "")
        lines.append(f"The shipped {shipped['name']} has mean KLD {shipped['kld']:.4f}, above {threshold}{changed}.")
    lines += _vllm_verdict(eval_result, threshold)
    fell_back = shipped.get("quantized") if shipped else None
    if fell_back and fell_back.get("fallback"):
        lines.append(f"In the shipped {shipped['name']}, llama.cpp fell back to other types for "
                     f"{fallback_text(fell_back, ' quantized tensors')}: their rows are not a multiple of the "
                     f"requested type's block (quantize.log lists them).")
    return lines


def _vllm_verdict(eval_result: dict[str, Any], threshold: float) -> list[str]:
    """GPU serving: the smallest vLLM checkpoint close enough to the merged model."""
    checkpoints = [m for m in eval_result["models"] if m["kind"] == VLLM and m["kld"] is not None]
    if not checkpoints:
        return []
    reference = eval_result["settings"].get("vllm_kld_reference") or "fine-tuned"
    merged = next((m for m in eval_result["models"] if m["name"] == reference), None)
    # the smallest; of equal sizes (fp8 and w8a8 both keep 8 bits a weight), the closer
    good = sorted((m for m in checkpoints if m["kld"] < threshold), key=lambda m: (m["file_size"] or 0, m["kld"]))
    if not good:
        size = f" ({_show(merged['file_size'], 'mib')} MiB)" if merged else ""
        return [f"For GPU serving with vLLM, no checkpoint has mean KLD below {threshold} vs the merged "
                f"model: none is recommended; serve the merged model{size} (target.vllm.serve=merged) or add "
                f"fp8 or w8a8 to target.vllm.quants."]
    pick = good[0]
    share = f", {pick['file_size'] / merged['file_size']:.0%} of the merged model" if merged and \
        merged["file_size"] else ""
    return [f"For GPU serving with vLLM: {pick['name']} ({_show(pick['file_size'], 'mib')} MiB{share}), the "
            f"smallest checkpoint with mean KLD below {threshold} vs the merged model (KLD "
            f"{pick['kld']:.4f}, top-1 agreement {_show(pick['top1'], 'pct')}); serve it with "
            f"target.vllm.serve={pick['name']}."]


def _preference_verdict(eval_result: dict[str, Any], by_name: dict[str, dict]) -> list[str]:
    """Preference tuning: did the tuned model come to prefer the chosen answers?"""
    reference = eval_result.get("preference_reference")
    tuned = (by_name.get("fine-tuned") or {}).get("preference")
    if not reference or not tuned:
        return []
    method = eval_result["method"].upper()
    lines = []
    before = (by_name.get(reference) or {}).get("preference") or {}
    if tuned.get("prefers_chosen") is not None and before.get("prefers_chosen") is not None:
        moved = "raised" if tuned["prefers_chosen"] > before["prefers_chosen"] else (
            "did NOT raise" if tuned["prefers_chosen"] == before["prefers_chosen"] else "LOWERED")
        lines.append(f"{method} {moved} the share of {tuned['pairs']} held-out pairs in which the model prefers the "
                     f"chosen answer (mean log-probability per token) from {before['prefers_chosen']:.0%} "
                     f"({reference}) to {tuned['prefers_chosen']:.0%}.")
    if tuned.get("reward_accuracy") is not None:
        lines.append(f"Against {reference}, the tuned model's implicit reward ranks the chosen answer higher in "
                     f"{tuned['reward_accuracy']:.0%} of held-out cases (reward margin {tuned['reward_margin']:+.3f}).")
    return lines


def metrics_note(eval_result: dict[str, Any]) -> str:
    """What the metrics table measures, for the kind of data the last training stage learnt from."""
    holdout, settings = eval_result["holdout"], eval_result["settings"]
    data = eval_result.get("data", "chat")
    noun = ROW_NOUNS.get(data, "rows")
    lines = [f"Held-out {noun} were never trained on (dataset.holdout = {holdout['size']}, seed {holdout['seed']})."]
    if data == "text":
        lines.append("NLL and perplexity cover every token of each document; nothing is generated.")
    elif data == "pairs":
        lines.append("NLL and perplexity cover the chosen answers' tokens. \"Prefers chosen\": the share of pairs "
                     "whose chosen answer has the higher mean log-probability per token; \"chosen - rejected "
                     "log-prob\": the mean difference of their summed log-probabilities.")
    else:
        lines.append("NLL and perplexity cover the answer tokens only.")
    reference = eval_result.get("preference_reference")
    if reference:
        lines.append(f"\"Reward accuracy\": the share of held-out cases in which the implicit reward, beta x (log p "
                     f"- log p of {reference}), ranks them as the data does (chosen above rejected; a good answer "
                     f"above 0, a bad one below); \"reward margin\": the mean reward difference (beta "
                     f"{settings.get('pref_beta')}).")
    vllm = (f", and each vLLM checkpoint's with the merged model's ({settings['vllm_kld_reference']}; "
            f"checkpoints run in transformers on this machine, so their speed is not vLLM's)"
            if settings.get("vllm_kld_reference") else "")
    lines.append(f"KLD and top-1 agreement compare each GGUF's next-token distributions with "
                 f"{settings['kld_reference']}'s{vllm}" + ("." if data == "text" else
                                                    f"; answers are greedy, at most {settings['max_new_tokens']} "
                                                    f"tokens."))
    return " ".join(lines)


def _data_uri(png: bytes | None) -> str | None:
    return "data:image/png;base64," + base64.b64encode(png).decode() if png else None


def _samples(eval_result: dict[str, Any] | None) -> list[dict[str, Any]]:
    if eval_result is None:
        return []
    return [{"prompt": s["prompt"], "rows": [("reference", s["reference"]), *s["answers"].items()]}
            for s in eval_result["samples"]]


def write_variant_report(out_dir: Path, report: VariantReport, templates: TemplateDir) -> tuple[Path, Path]:
    """report.md and report.html, laid out by templates/report/."""
    out_dir = Path(out_dir)
    images = {"loss": charts.loss_curve(report.train_losses),
              "ladder": charts.quant_ladder(report.eval) if report.eval else None}
    for name, png in images.items():
        if png:
            (out_dir / f"{name}.png").write_bytes(png)
    header, rows = metrics_table(report.eval) if report.eval else ([], [])
    values = {
        "title": report.variant, "verdict": verdict(report.eval), "header": header, "rows": rows,
        "eval": report.eval, "samples": _samples(report.eval), "stages": report.stages,
        "total_seconds": sum(s["seconds"] or 0 for s in report.stages), "config_yaml": report.config_yaml,
        "smoke": report.smoke, "final_loss": report.train_losses[-1][1] if report.train_losses else None,
        "training": report.training,
        "heldout_noun": ROW_NOUNS.get(report.eval.get("data"), "rows") if report.eval else "rows",
        "metrics_note": metrics_note(report.eval) if report.eval else "",
    }
    md = out_dir / REPORT_MD
    files = {k: f"{k}.png" if v else None for k, v in images.items()}
    md.write_text(templates.render(REPORT_TEMPLATES[0], images=files, **values), encoding="utf-8")
    html = out_dir / REPORT_HTML
    html.write_text(templates.render(REPORT_TEMPLATES[1], images={k: _data_uri(v) for k, v in images.items()},
                                     **values), encoding="utf-8")
    return md, html


def _swept_value(report: VariantReport, key: str) -> str:
    """The override value that named this variant; else the key's scalar value in its resolved config."""
    if key in report.swept:
        return str(report.swept[key])
    value: Any = yaml.safe_load(report.config_yaml) or {}
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "—" if value is None or isinstance(value, (dict, list)) else str(value)


def write_sweep_report(out_dir: Path, reports: list[VariantReport], swept_keys: list[str],
                       templates: TemplateDir) -> tuple[Path, Path]:
    """One row per variant: its name and swept values, then the shipped quant's and the fine-tuned
    model's numbers ("—" for a variant built without eval)."""
    out_dir = Path(out_dir)
    rows, perplexities = [], []
    for report in reports:
        by_name = {m["name"]: m for m in report.eval["models"]} if report.eval else {}
        shipped = by_name.get(report.eval["shipped_quant"], {}) if report.eval else {}
        tuned = by_name.get("fine-tuned", {})
        perplexities.append(shipped.get("perplexity"))
        rows.append([report.variant, *(_swept_value(report, key) for key in swept_keys),
                     _show(tuned.get("perplexity"), "{:.2f}"), _show(shipped.get("perplexity"), "{:.2f}"),
                     _show(shipped.get("kld"), "{:.4f}"), _show(shipped.get("rouge_l"), "{:.2f}"),
                     _show(shipped.get("exact_match"), "pct"),
                     _show(_value(shipped, ("tool_call", "arguments")), "pct"),
                     _show(shipped.get("file_size"), "mib"),
                     _show(report.train_losses[-1][1] if report.train_losses else None, "{:.4f}")])
    header = ["variant", *swept_keys, "fine-tuned ppl", "shipped ppl", "shipped KLD", "ROUGE-L", "exact", "tool args",
              "size MiB", "final train loss"]
    png = charts.sweep_perplexity([r.variant for r in reports], perplexities)
    if png:
        (out_dir / "perplexity.png").write_bytes(png)
    values = {"title": "Sweep: " + (", ".join(swept_keys) or "variants"), "header": header, "rows": rows}
    md = out_dir / REPORT_MD
    md.write_text(templates.render(SWEEP_REPORT_TEMPLATES[0], image="perplexity.png" if png else None, **values),
                  encoding="utf-8")
    html = out_dir / REPORT_HTML
    html.write_text(templates.render(SWEEP_REPORT_TEMPLATES[1], image=_data_uri(png), **values), encoding="utf-8")
    return md, html
