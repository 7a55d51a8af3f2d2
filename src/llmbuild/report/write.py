"""report.md (charts as PNG files beside it) and a self-contained report.html (styles inline,
charts as data: URIs, no script, no external URL), for one build or for a sweep."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Callable

import yaml

from ..evaluation.results import EvalResults, ModelResult
from ..evaluation.roster import BASE, GGUF, VLLM
from ..facts.layout import NO_IMATRIX, REPORT_HTML, REPORT_MD, REPORT_TEMPLATES, SWEEP_CHART, SWEEP_REPORT_TEMPLATES
from ..facts.quant_types import fallback_text
from ..facts.train_methods import PAIRS, ROW_NOUNS, TEXT
from ..files.templates import TemplateDir
from . import charts
from .variant import VariantReport

COLUMNS: tuple[tuple[str, Callable[[ModelResult], Any], str], ...] = (  # header, the value, how to show it
    ("NLL", lambda m: m.nll, "{:.3f}"),
    ("perplexity (95%)", lambda m: m.perplexity and (m.perplexity, m.perplexity_interval), "ci2"),
    ("KLD (95%)", lambda m: m.kld is not None and (m.kld, m.kld_interval) or None, "ci4"),
    ("top-1 (95%)", lambda m: m.top1 is not None and (m.top1, m.top1_interval) or None, "pctci"),
    ("KLD tokens", lambda m: m.compared_tokens, "{:,}"),
    ("bits/weight", lambda m: m.quantized and m.quantized.get("bits_per_weight"), "{:.2f}"),
    ("imatrix", lambda m: m.imatrix, "yesno"),
    ("exact", lambda m: m.exact_match, "pct"), ("ROUGE-L", lambda m: m.rouge_l, "{:.2f}"),
    ("tool call parsed", lambda m: m.tool_call and m.tool_call.parsed, "pct"),
    ("right name", lambda m: m.tool_call and m.tool_call.name, "pct"),
    ("right args", lambda m: m.tool_call and m.tool_call.arguments, "pct"),
    ("prefers chosen", lambda m: m.preference and m.preference.prefers_chosen, "pct"),
    ("chosen - rejected log-prob", lambda m: m.preference and m.preference.margin, "{:+.2f}"),
    ("reward accuracy", lambda m: m.preference and m.preference.reward_accuracy, "pct"),
    ("reward margin", lambda m: m.preference and m.preference.reward_margin, "{:+.3f}"),
    ("prompt tok/s", lambda m: m.prompt_tokens_per_second, "{:.0f}"),
    ("gen tok/s", lambda m: m.generation_tokens_per_second, "{:.1f}"),
    ("size MiB", lambda m: m.file_size, "mib"), ("peak RSS MiB", lambda m: m.peak_rss_bytes, "mib"),
    ("fallback tensors", lambda m: m.quantized, "fallback"),
)


def _show(value: Any, how: str) -> str:
    if value is None:
        return "—"
    if how == "pct":
        return f"{value:.1%}"
    if how == "mib":
        return f"{value / 2**20:.1f}"
    if how == "fallback":
        return fallback_text(value)
    if how == "range4":   # an interval
        return f"{value[0]:.4f}–{value[1]:.4f}"
    if how in ("ci2", "ci4", "pctci"):   # (value, its 95% interval or None)
        shown, bounds = value
        cell = f"{shown:.1%}" if how == "pctci" else f"{shown:.{int(how[-1])}f}"
        if bounds:
            low, high = (f"{b:.1%}" for b in bounds) if how == "pctci" else (f"{b:.{int(how[-1])}f}" for b in bounds)
            cell += f" ({low}–{high})"
        return cell
    if how == "yesno":
        return "yes" if value else "no"
    return how.format(value)


def metrics_table(eval_result: EvalResults) -> tuple[list[str], list[list[str]]]:
    """Header and rows, leaving out columns no model has (e.g. tool calls on a chat dataset)."""
    models = eval_result.models
    columns = [c for c in COLUMNS if any(c[1](m) is not None for m in models)]
    shipped = eval_result.shipped_quant
    rows = [[charts.shown_name(m) + (" (shipped)" if m.name == shipped else "")]
            + [_show(read(m), how) for _, read, how in columns] for m in models]
    return ["model"] + [c[0] for c in columns], rows


def verdict(eval_result: EvalResults | None) -> list[str]:
    """Plain sentences: was the fine-tune worth it, and which quant to ship."""
    if eval_result is None:
        return ["Evaluation did not run (eval.enabled=false): no held-out metrics, no quant recommendation."]
    lines = []
    base, tuned = eval_result.model(BASE), eval_result.tuned
    what = {TEXT: "perplexity on held-out text", PAIRS: "perplexity on the chosen answers of held-out pairs"}.get(
        eval_result.data, "held-out perplexity")
    lines += _preference_verdict(eval_result)
    if base and tuned and base.perplexity and tuned.perplexity:
        change = tuned.perplexity / base.perplexity - 1
        better = "lowered" if change < 0 else "RAISED"
        method = eval_result.method
        doing = "Continued pretraining" if method == "pt" else "Fine-tuning" if method == "sft" else method.upper()
        lines.append(f"{doing} {better} {what} from {base.perplexity:.2f} to "
                     f"{tuned.perplexity:.2f} ({change:+.0%}) on {eval_result.holdout.rows} held-out "
                     f"{ROW_NOUNS.get(eval_result.data, 'rows')}.")
    elif tuned and tuned.perplexity:
        lines.append(f"Fine-tuned held-out perplexity {tuned.perplexity:.2f} (the base model was not evaluated).")
    threshold = eval_result.settings.recommend_kld
    reference = eval_result.settings.kld_reference
    # the reference passes its own test trivially: it is the fallback, not a recommendation
    ggufs = [m for m in eval_result.models if m.kind == GGUF and m.kld is not None and m.name != reference]
    good = sorted((m for m in ggufs if kld_bound(m) < threshold), key=lambda m: m.file_size or 0)
    shipped = eval_result.shipped
    if good:
        pick = good[0]
        bound = f", 95% interval {_show(pick.kld_interval, 'range4')}" if pick.kld_interval else ""
        lines.append(f"Recommended quant: {pick.name} ({_show(pick.file_size, 'mib')} MiB), the smallest whose "
                     f"KLD vs {reference} stays below {threshold} at the upper end of its 95% interval "
                     f"(KLD {pick.kld:.4f}{bound}, top-1 agreement {_show(pick.top1, 'pct')}"
                     f"{f', over {pick.compared_tokens:,} tokens' if pick.compared_tokens else ''}).")
    elif ggufs:
        kept = eval_result.model(reference)
        size = f" ({_show(kept.file_size, 'mib')} MiB)" if kept else ""
        lines.append(f"No quant has a KLD whose 95% upper bound is below {threshold} vs {reference}: none is "
                     f"recommended; ship {reference}{size} or add larger types to eval.quants.")
    lines += _imatrix_verdict(eval_result)
    if shipped and shipped.kld is not None and kld_bound(shipped) >= threshold:
        changed = (f": it changes the top token on {1 - shipped.top1:.1%} of positions"
                   if shipped.top1 is not None else "")
        if shipped.kld >= threshold:
            lines.append(f"The shipped {shipped.name} has mean KLD {shipped.kld:.4f}, above {threshold}{changed}.")
        else:
            lines.append(f"The shipped {shipped.name}'s mean KLD {shipped.kld:.4f} is below {threshold}, but its 95% "
                         f"interval reaches {shipped.kld_interval[1]:.4f}: it may not be (more text never trained on, "
                         f"eval.kld_text, narrows the interval){changed}.")
    lines += _vllm_verdict(eval_result, threshold)
    fell_back = shipped.quantized if shipped else None
    if fell_back and fell_back.get("fallback"):   # quantize.json (facts/quant_types.py)
        lines.append(f"In the shipped {shipped.name}, llama.cpp fell back to other types for "
                     f"{fallback_text(fell_back, ' quantized tensors')}: their rows are not a multiple of the "
                     f"requested type's block (quantize.log lists them).")
    return lines


def kld_bound(model: ModelResult) -> float:
    """What the recommendation tests: the upper end of the KLD's 95% interval (the mean, where a
    result has no interval)."""
    return model.kld_interval[1] if model.kld_interval else model.kld


def _imatrix_verdict(eval_result: EvalResults) -> list[str]:
    """eval.compare_imatrix: each type's KLD with and without its importance matrix."""
    lines = []
    for plain in (m for m in eval_result.models if m.kind == GGUF and m.name.endswith(NO_IMATRIX)):
        weighted = eval_result.model(plain.name.removesuffix(NO_IMATRIX))
        if not weighted or not weighted.kld or not plain.kld:
            continue
        gain = 1 - weighted.kld / plain.kld
        apart = weighted.kld_interval and plain.kld_interval and (weighted.kld_interval[1] < plain.kld_interval[0]
                                                                  or plain.kld_interval[1] < weighted.kld_interval[0])
        lines.append(f"{weighted.name} with its importance matrix: KLD {weighted.kld:.4f} against {plain.kld:.4f} "
                     f"without ({abs(gain):.0%} {'lower' if gain >= 0 else 'higher'}; "
                     f"{'the 95% intervals do not overlap' if apart else 'the 95% intervals overlap: within noise'}).")
    return lines


def _vllm_verdict(eval_result: EvalResults, threshold: float) -> list[str]:
    """GPU serving: the smallest vLLM checkpoint close enough to the merged model."""
    checkpoints = [m for m in eval_result.models if m.kind == VLLM and m.kld is not None]
    if not checkpoints:
        return []
    merged = eval_result.model(eval_result.settings.vllm_kld_reference)
    # the smallest; of equal sizes (fp8 and w8a8 both keep 8 bits a weight), the closer
    good = sorted((m for m in checkpoints if m.kld < threshold), key=lambda m: (m.file_size or 0, m.kld))
    if not good:
        size = f" ({_show(merged.file_size, 'mib')} MiB)" if merged else ""
        return [f"For GPU serving with vLLM, no checkpoint has mean KLD below {threshold} vs the merged "
                f"model: none is recommended; serve the merged model{size} (target.vllm.serve=merged) or add "
                f"fp8 or w8a8 to target.vllm.quants."]
    pick = good[0]
    share = f", {pick.file_size / merged.file_size:.0%} of the merged model" if merged and merged.file_size else ""
    return [f"For GPU serving with vLLM: {pick.name} ({_show(pick.file_size, 'mib')} MiB{share}), the "
            f"smallest checkpoint with mean KLD below {threshold} vs the merged model (KLD "
            f"{pick.kld:.4f}, top-1 agreement {_show(pick.top1, 'pct')}); serve it with "
            f"target.vllm.serve={pick.name}."]


def _preference_verdict(eval_result: EvalResults) -> list[str]:
    """Preference tuning: did the tuned model come to prefer the chosen answers?"""
    reference = eval_result.preference_reference
    tuned = eval_result.tuned.preference if eval_result.tuned else None
    if not reference or not tuned:
        return []
    method = eval_result.method.upper()
    lines = []
    started = eval_result.model(reference)
    before = started.preference if started else None
    if tuned.prefers_chosen is not None and before and before.prefers_chosen is not None:
        moved = "raised" if tuned.prefers_chosen > before.prefers_chosen else (
            "did NOT raise" if tuned.prefers_chosen == before.prefers_chosen else "LOWERED")
        lines.append(f"{method} {moved} the share of {tuned.pairs} held-out pairs in which the model prefers the "
                     f"chosen answer (mean log-probability per token) from {before.prefers_chosen:.0%} "
                     f"({reference}) to {tuned.prefers_chosen:.0%}.")
    if tuned.reward_accuracy is not None:
        lines.append(f"Against {reference}, the tuned model's implicit reward ranks the chosen answer higher in "
                     f"{tuned.reward_accuracy:.0%} of held-out cases (reward margin {tuned.reward_margin:+.3f}).")
    return lines


def metrics_note(eval_result: EvalResults) -> str:
    """What the metrics table measures, for the kind of data the last training stage learnt from."""
    holdout, settings, data = eval_result.holdout, eval_result.settings, eval_result.data
    noun = ROW_NOUNS.get(data, "rows")
    lines = [f"Held-out {noun} were never trained on (dataset.holdout = {holdout.size}, seed {holdout.seed})."]
    if data == TEXT:
        lines.append("NLL and perplexity cover every token of each document; nothing is generated.")
    elif data == PAIRS:
        lines.append("NLL and perplexity cover the chosen answers' tokens. \"Prefers chosen\": the share of pairs "
                     "whose chosen answer has the higher mean log-probability per token; \"chosen - rejected "
                     "log-prob\": the mean difference of their summed log-probabilities.")
    else:
        lines.append("NLL and perplexity cover the answer tokens only.")
    reference = eval_result.preference_reference
    if reference:
        lines.append(f"\"Reward accuracy\": the share of held-out cases in which the implicit reward, beta x (log p "
                     f"- log p of {reference}), ranks them as the data does (chosen above rejected; a good answer "
                     f"above 0, a bad one below); \"reward margin\": the mean reward difference (beta "
                     f"{settings.pref_beta}).")
    vllm = (f", and each vLLM checkpoint's with the merged model's ({settings.vllm_kld_reference}; "
            f"checkpoints run in transformers on this machine, so their speed is not vLLM's)"
            if settings.vllm_kld_reference else "")
    lines.append(f"KLD and top-1 agreement compare each GGUF's next-token distributions with "
                 f"{settings.kld_reference}'s{vllm}" + ("." if data == TEXT else
                                                 f"; answers are greedy, at most {settings.max_new_tokens} "
                                                 f"tokens."))
    return " ".join(lines)


def _data_uri(png: bytes | None) -> str | None:
    return "data:image/png;base64," + base64.b64encode(png).decode() if png else None


def _samples(eval_result: EvalResults | None) -> list[dict[str, Any]]:
    if eval_result is None:
        return []
    return [{"prompt": s.prompt, "rows": [("reference", s.reference), *s.answers.items()]}
            for s in eval_result.samples]


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
        "heldout_noun": ROW_NOUNS.get(report.eval.data, "rows") if report.eval else "rows",
        "metrics_note": metrics_note(report.eval) if report.eval else "",
    }
    md = out_dir / REPORT_MD
    files = {k: f"{k}.png" if v else None for k, v in images.items()}
    md.write_text(templates.render(REPORT_TEMPLATES[0], images=files, **values), encoding="utf-8")
    html = out_dir / REPORT_HTML
    html.write_text(templates.render(REPORT_TEMPLATES[1], images={k: _data_uri(v) for k, v in images.items()},
                                     **values), encoding="utf-8")
    return md, html


def _cell(model: ModelResult | None, read: Callable[[ModelResult], Any], how: str) -> str:
    """One model's value in a sweep's row; "—" for a variant built without eval."""
    return _show(read(model) if model else None, how)


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
        shipped = report.eval.shipped if report.eval else None
        tuned = report.eval.tuned if report.eval else None
        perplexities.append(shipped.perplexity if shipped else None)
        rows.append([report.variant, *(_swept_value(report, key) for key in swept_keys),
                     _cell(tuned, lambda m: m.perplexity, "{:.2f}"), _cell(shipped, lambda m: m.perplexity, "{:.2f}"),
                     _cell(shipped, lambda m: m.kld, "{:.4f}"), _cell(shipped, lambda m: m.rouge_l, "{:.2f}"),
                     _cell(shipped, lambda m: m.exact_match, "pct"),
                     _cell(shipped, lambda m: m.tool_call and m.tool_call.arguments, "pct"),
                     _cell(shipped, lambda m: m.file_size, "mib"),
                     _show(report.train_losses[-1][1] if report.train_losses else None, "{:.4f}")])
    header = ["variant", *swept_keys, "fine-tuned ppl", "shipped ppl", "shipped KLD", "ROUGE-L", "exact", "tool args",
              "size MiB", "final train loss"]
    png = charts.sweep_perplexity([r.variant for r in reports], perplexities)
    if png:
        (out_dir / SWEEP_CHART).write_bytes(png)
    values = {"title": "Sweep: " + (", ".join(swept_keys) or "variants"), "header": header, "rows": rows}
    md = out_dir / REPORT_MD
    md.write_text(templates.render(SWEEP_REPORT_TEMPLATES[0], image=SWEEP_CHART if png else None, **values),
                  encoding="utf-8")
    html = out_dir / REPORT_HTML
    html.write_text(templates.render(SWEEP_REPORT_TEMPLATES[1], image=_data_uri(png), **values), encoding="utf-8")
    return md, html
