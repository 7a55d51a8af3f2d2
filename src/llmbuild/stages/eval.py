"""eval: was the fine-tune worth it, and which quantization should ship? The held-out rows (never
trained on) are run through the base model, each earlier stage of a pipeline, the fine-tuned
(merged) model, the f16 GGUF, every quant of the ladder and every vLLM checkpoint (in the quant
environment's transformers), each in its own process: held-out NLL/perplexity on the answers (on
the whole text, for continued pretraining), KLD and top-1 agreement of each GGUF quant against the
f16 GGUF and of each vLLM checkpoint against the merged model, greedy answers scored against the references, for
preference tuning how often each model prefers the chosen answer and its reward margin against the
reference model (evaluation/preference.py), speed, size and peak memory. The models are a roster
(evaluation/roster.py); each worker gets a request and writes an answer (evaluation/protocol.py).
Results: eval.json (evaluation/results.py; the report reads it) and answers.md."""

from __future__ import annotations

import json
import re
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..adapters import llama_cpp, tool_env
from ..adapters.llama_cpp_vocab import metadata_and_token_ids, read_metadata
from ..adapters.process import run_logged
from ..errors import StageError
from ..evaluation import cases as eval_cases
from ..evaluation import metrics, preference, results
from ..evaluation.protocol import Answer, Request
from ..evaluation.roster import BASE, GGUF, HF, TUNED, VLLM, Entry
from ..facts import layout
from ..facts.tool_envs import QUANT
from ..facts.train_methods import LABELLED, PAIRS, ROW_NOUNS, TEXT, method
from . import chat, ggufs
from .context import StageContext

WORKER = "llmbuild.adapters.eval_worker"   # run as `python -m`, one process per model


def run(ctx: StageContext) -> None:
    cfg, settings = ctx.cfg, ctx.cfg.eval
    setup = chat.recorded(ctx.inputs["merge"])
    reference_gguf = ggufs.gguf(ctx.inputs["convert"])
    meta = read_metadata(reference_gguf)
    family_stops = setup.chat_family.stop if setup.chat_family else ()
    stops = list(dict.fromkeys([*family_stops, *meta.end_tokens]))
    render = llama_cpp.chat_formatter(meta.get("tokenizer.chat_template") or "", meta.bos_token,
                                      meta.end_tokens[0] if meta.end_tokens else "")
    learner = method(cfg.train.stage)
    rows = eval_cases.load(ctx.inputs["data"] / layout.HELDOUT, settings.max_rows)
    if not rows:
        raise StageError("no held-out rows to evaluate; set dataset.holdout (e.g. 0.1) or build with "
                         "eval.enabled=false")
    try:
        if learner.data == TEXT:
            cases = eval_cases.build_text(rows, meta.bos_token if meta.get("tokenizer.ggml.add_bos_token") == "true"
                                          else "")
        elif learner.data == PAIRS:
            cases = eval_cases.build_pairs(rows, render, stops)
        else:
            cases = eval_cases.build(rows, render, stops)
    except ValueError as err:
        raise StageError(f"{setup.source}: {err}") from None
    quants = [cfg.quant.type, *layout.ladder(cfg.eval.quants, cfg.quant.type)]
    compared = [quant for quant in quants if layout.ladder_slot(quant, imatrix=False) in ctx.inputs]
    kld_chunks, kld_note = _kld_chunks(ctx, reference_gguf, cases)
    earlier = [(slot.partition("@")[2], path) for slot, path in ctx.inputs.items()
               if slot.startswith("merge@")]   # a pipeline's earlier stages, in order
    checkpoints = [(slot.partition("@")[2], path) for slot, path in ctx.inputs.items()
                   if layout.stage_of(slot) == "vllm_quant"]   # vLLM's, run in the quant environment
    quant_python = tool_env.python(QUANT, ctx.project) if checkpoints else None
    # preference tuning measures the tuned model against the model it started from
    reference_model = (earlier[-1][0] if earlier else BASE) if learner.preference else None
    models: list[Entry] = []
    if settings.base or reference_model == BASE:
        models.append(Entry(BASE, HF, ctx.inputs["base"]))
    models += [Entry(name, HF, path / layout.MERGED) for name, path in earlier]
    models.append(Entry(TUNED, HF, ctx.inputs["merge"] / layout.MERGED))
    models.append(Entry(cfg.quant.convert_type, GGUF, reference_gguf, quant=cfg.quant.convert_type))
    for quant in quants:
        slot = "quantize" if quant == cfg.quant.type else layout.ladder_slot(quant)
        models.append(Entry(quant, GGUF, ggufs.gguf(ctx.inputs[slot]), quant=quant,
                            quantized=_quantize_record(ctx.inputs[slot])))
    for quant in compared:   # eval.compare_imatrix: the same type without its importance matrix
        slot = layout.ladder_slot(quant, imatrix=False)
        models.append(Entry(slot.partition("@")[2], GGUF, ggufs.gguf(ctx.inputs[slot]), quant=quant,
                            quantized=_quantize_record(ctx.inputs[slot])))
    for scheme, path in checkpoints:
        models.append(Entry(scheme, VLLM, path / layout.QUANTIZED_MODEL, quant=scheme,
                            checkpoint=json.loads((path / layout.VLLM_QUANT_RECORD).read_text(encoding="utf-8"))))
    measured: list[tuple[Entry, Answer]] = []
    progress = ctx.progress(f"evaluating {len(rows)} held-out {ROW_NOUNS[learner.data]} with each model")
    # inside the artifact's unfinished folder: a killed eval leaves its held-out text nowhere a rerun or
    # `doit gc` does not clean
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=ctx.out) as scratch:
        reference_logprobs, merged_logprobs = Path(scratch) / "reference", Path(scratch) / "merged"
        reference_logprobs.mkdir()
        merged_logprobs.mkdir()
        for model in models:
            save = compare = None   # where this model's log-probabilities go, or the ones it is measured against
            if model.kind == GGUF:
                first_gguf = model.path == reference_gguf
                save, compare = (reference_logprobs, None) if first_gguf else (None, reference_logprobs)
            elif model.name == TUNED and checkpoints:   # vLLM's checkpoints are measured against the merged model
                save = merged_logprobs
            elif model.kind == VLLM:
                compare = merged_logprobs
            request = Request(kind=model.kind, path=model.path, cases=cases, stops=stops,
                              max_new_tokens=settings.max_new_tokens, n_ctx=settings.n_ctx,
                              n_gpu_layers=settings.n_gpu_layers, save_logprobs=save, reference_logprobs=compare,
                              kld_chunks=kld_chunks if model.kind == GGUF else None)
            number, name = len(measured) + 1, model.name
            progress.update(number, len(models), name)
            python = quant_python if model.kind == VLLM else Path(sys.executable)
            answer = _run_worker(ctx, name, request, Path(scratch), python,
                                 lambda line, n=number, name=name: _answered(progress, line, n, len(models), name))
            measured.append((model, answer))
    progress.close()
    found = _summary(cfg, learner, cases, rows, measured, reference_model)
    results.write(ctx.out / layout.EVAL_RESULTS, found)
    (ctx.out / layout.EVAL_ANSWERS).write_text(_answers_markdown(found), encoding="utf-8")
    for model in found.models:
        ctx.say(_one_line(model))
    if kld_note:
        ctx.say(kld_note)


def _kld_chunks(ctx: StageContext, reference_gguf: Path, cases) -> tuple[list[list[int]], str]:
    """Token ids of eval.kld_text, in chunks of eval.n_ctx, as many as the held-out rows need to reach
    eval.kld_tokens positions; and a line for the terminal when they fall short."""
    settings = ctx.cfg.eval
    texts = ctx.texts()   # eval.kld_text, in its order
    _, ids = metadata_and_token_ids(reference_gguf, [case.prompt_text + case.answer_text for case in cases] + texts)
    have = sum(max(min(len(case_ids), settings.n_ctx) - 1, 0) for case_ids in ids[:len(cases)])
    chunks = []
    for text_ids in ids[len(cases):]:
        for start in range(0, len(text_ids), settings.n_ctx):
            if have >= settings.kld_tokens:
                break
            chunk = text_ids[start:start + settings.n_ctx]
            if len(chunk) > 1:
                chunks.append(chunk)
                have += len(chunk) - 1
    note = (f"KLD over {have:,} positions (eval.kld_tokens asks {settings.kld_tokens:,}): the report's 95% intervals "
            f"show whether that separates the quants; eval.kld_text=[file.txt] adds text never trained on"
            if have < settings.kld_tokens else "")
    return chunks, note


_ANSWER = re.compile(r"answer (\d+)/(\d+)")   # the worker's line per answered case


def _answered(progress, line: str, number: int, models: int, name: str) -> None:
    found = _ANSWER.search(line)
    if found:
        progress.update(number, models, f"{name}, answer {found[1]}/{found[2]}")


def _run_worker(ctx: StageContext, name: str, request: Request, scratch: Path, python: Path,
                on_line) -> Answer:
    request_file, result_file = scratch / f"{name}.request.json", scratch / f"{name}.result.json"
    request.write(request_file)
    run_logged([str(python), "-m", WORKER, str(request_file), str(result_file)],
               ctx.out / "logs" / f"{name}.log", what=f"evaluating {name}",
               env={"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}, quiet=not ctx.verbose, on_line=on_line)
    return Answer.read(result_file)


def _quantize_record(artifact: Path) -> dict[str, Any]:
    """What the quantize stage recorded about the tensors it wrote (quantize.json)."""
    return json.loads((artifact / layout.QUANTIZE_RECORD).read_text(encoding="utf-8"))


def _preference(learner, answer: Answer, reference: Answer | None, rows, beta) -> results.Preference | None:
    """Preference metrics of one model (`reference`: the reference model's answer, None for itself)."""
    against = reference.case_logprobs if reference is not None else None
    if learner.data == PAIRS:
        return results.Preference(**preference.pairs(answer.case_logprobs, answer.case_tokens, against, beta))
    if learner.data == LABELLED:
        return results.Preference(**preference.labelled(answer.case_logprobs, [row["label"] for row in rows],
                                                        against, beta))
    return None


def _size(path: Path) -> int:
    """Bytes: the GGUF, or the folder's safetensors."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.glob("*.safetensors"))


def _summary(cfg, learner, cases, rows, measured: list[tuple[Entry, Answer]],
             reference_model: str | None) -> results.EvalResults:
    models, answers = [], {}
    generated = [case for case in cases if case.generate]
    reference = next((answer for model, answer in measured if model.name == reference_model), None)
    for model, answer in measured:
        compared = model.kind in (GGUF, VLLM)   # KLD against the f16 GGUF, or the merged model
        scored = metrics.score(answer.answers, generated)
        models.append(results.ModelResult(
            name=model.name, kind=model.kind, quant=model.quant, file_size=_size(model.path),
            nll=answer.nll, perplexity=answer.perplexity, answer_tokens=answer.answer_tokens,
            kld=answer.kld if compared else None, top1=answer.top1 if compared else None,
            exact_match=scored["exact_match"], rouge_l=scored["rouge_l"],
            tool_call=results.ToolCalls(**scored["tool_call"]) if scored["tool_call"] else None,
            prompt_tokens_per_second=answer.prompt_tokens_per_second,
            generation_tokens_per_second=answer.generation_tokens_per_second,
            peak_rss_bytes=answer.peak_rss_bytes, quantized=model.quantized, checkpoint=model.checkpoint,
            perplexity_interval=answer.perplexity_interval,
            kld_interval=answer.kld_interval if compared else None,
            top1_interval=answer.top1_interval if compared else None,
            compared_tokens=answer.compared_tokens if compared else None,
            imatrix=bool(model.quantized.get("imatrix")) if model.quantized else None,
            preference=_preference(learner, answer, None if model.name == reference_model else reference, rows,
                                   cfg.train.pref_beta)))
        answers[model.name] = answer.answers
    first = next(index for index, m in enumerate(models) if m.kind == GGUF)
    gguf_reference = replace(models[first], kld=0.0, top1=1.0, kld_interval=None, top1_interval=None,
                             compared_tokens=None)  # the f16 GGUF is the reference itself
    hf = [m for m in models if m.kind == HF]
    quants = sorted((m for index, m in enumerate(models) if m.kind == GGUF and index != first),
                    key=lambda m: m.file_size, reverse=True)
    checkpoints = sorted((m for m in models if m.kind == VLLM), key=lambda m: m.file_size, reverse=True)
    return results.EvalResults(
        holdout=results.Holdout(rows=len(rows), size=cfg.dataset.holdout, seed=cfg.dataset.holdout_seed),
        settings=results.Settings(max_new_tokens=cfg.eval.max_new_tokens, kld_reference=gguf_reference.name,
                                  recommend_kld=cfg.eval.recommend_kld, n_ctx=cfg.eval.n_ctx,
                                  pref_beta=cfg.train.pref_beta if learner.preference else None,
                                  vllm_kld_reference=TUNED if checkpoints else None,
                                  kld_tokens=cfg.eval.kld_tokens),
        shipped_quant=cfg.quant.type,
        models=hf + [gguf_reference] + quants + checkpoints,
        samples=[results.Sample(prompt=case.prompt,
                                reference=case.reference or json.dumps(case.reference_calls, ensure_ascii=False),
                                answers={name: outputs[index] for name, outputs in answers.items()})
                 for index, case in enumerate(generated)],
        method=learner.name, data=learner.data, preference_reference=reference_model)


def _one_line(model: results.ModelResult) -> str:
    parts = [f"{model.name:>10}: perplexity {model.perplexity:.2f}" if model.perplexity else model.name]
    if model.kld is not None and model.kind in (GGUF, VLLM):
        parts.append(f"KLD {model.kld:.4f}, top-1 {model.top1:.1%}")
    if model.rouge_l is not None:
        parts.append(f"exact {model.exact_match:.0%}, ROUGE-L {model.rouge_l:.2f}")
    if model.tool_call:
        calls = model.tool_call
        parts.append(f"tool calls parsed {calls.parsed:.0%} / name {calls.name:.0%} / args {calls.arguments:.0%}")
    pref = model.preference
    if pref and pref.prefers_chosen is not None:
        parts.append(f"prefers chosen {pref.prefers_chosen:.0%}")
    if pref and pref.reward_accuracy is not None:
        parts.append(f"reward accuracy {pref.reward_accuracy:.0%}, margin {pref.reward_margin:+.3f}")
    if model.generation_tokens_per_second:
        parts.append(f"{model.generation_tokens_per_second:.0f} tok/s")
    return ", ".join(parts)


def _answers_markdown(found: results.EvalResults) -> str:
    lines = ["# Held-out answers", "", "Greedy answers on rows that training never saw.", ""]
    for sample in found.samples:
        lines += [f"## {sample.prompt[:80]}", "", f"- **reference**: {sample.reference}"]
        lines += [f"- **{name}**: {answer}" for name, answer in sample.answers.items()]
        lines.append("")
    return "\n".join(lines)
