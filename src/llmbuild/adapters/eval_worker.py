"""Run and score one model on the eval cases, in a process of its own so that its peak resident
memory is its own:  python -m llmbuild.adapters.eval_worker request.json result.json

Per case: a greedy answer (timed: prompt tokens/s from the first token's latency, generation
tokens/s after it; cases marked not to generate, such as raw text or a rejected answer, are only
scored), then the log-probabilities of the rendered conversation. The answer span's mean negative
log-likelihood is the held-out NLL (prompt tokens masked, as in training); its summed
log-probability per case is what preference metrics compare. A run can save its per-position
log-probabilities (the f16 GGUF, or the merged model for vLLM's checkpoints) or compare with saved
ones: KL divergence of the next-token distributions and top-1 agreement, as llama-perplexity
--kl-divergence measures them. A vLLM checkpoint (compressed-tensors) runs in transformers like an
HF folder, in the quant environment, where this module imports nothing but numpy, its tools and
the request and answer records (evaluation/protocol.py), which the eval stage reads and writes too."""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.protocol import Answer, Request
from ..evaluation.roster import GGUF
from ..evaluation.scores import Scores, log_softmax


def peak_rss_bytes() -> int:
    """This process's own peak resident memory. Linux's ru_maxrss carries over the parent's peak
    across fork and exec (a worker started by a doit process that trained would report the
    trainer's), so VmHWM, the high-water mark of this process's address space, comes first."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _cut(ids: list[int], limit: int) -> tuple[list[int], int]:
    """Keep the last `limit` tokens (the answer is at the end); returns (ids, tokens dropped)."""
    return (ids, 0) if len(ids) <= limit else (ids[-limit:], len(ids) - limit)


def run_gguf(request: Request) -> Answer:
    from llama_cpp import Llama

    path, n_ctx, cases, budget = str(request.path), request.n_ctx, request.cases, request.max_new_tokens
    scores, answers = Scores(), []
    llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=min(n_ctx, 512), logits_all=False, verbose=False, seed=0,
                n_gpu_layers=request.n_gpu_layers)
    stop_ids = {llm.token_eos()} | {ids[0] for s in request.stops
                                    if len(ids := llm.tokenize(s.encode(), add_bos=False, special=True)) == 1}
    to_answer = [case for case in cases if case.generate]
    for index, case in enumerate(to_answer):
        prompt, _ = _cut(llm.tokenize(case.prompt_text.encode(), add_bos=False, special=True), n_ctx - budget)
        llm.reset()  # no KV-cache reuse between cases: every prompt is timed in full
        out: list[int] = []
        started = time.perf_counter()
        first = None
        for token in llm.generate(prompt, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
            first = first or time.perf_counter()
            if token in stop_ids or len(out) >= budget:
                break
            out.append(token)
        ended = time.perf_counter()
        answers.append(_strip(llm.detokenize(out, special=True).decode("utf-8", errors="replace"), request.stops))
        scores.prompt_tokens += len(prompt)
        scores.prompt_seconds += (first or ended) - started
        if len(out) > 1:
            scores.generated_tokens += len(out) - 1
            scores.generation_seconds += ended - (first or ended)
        print(f"    {Path(path).name}: answer {index + 1}/{len(to_answer)}", flush=True)
    rss = peak_rss_bytes()
    del llm
    scorer = Llama(model_path=path, n_ctx=n_ctx, n_batch=min(n_ctx, 512), logits_all=True, verbose=False, seed=0,
                   n_gpu_layers=request.n_gpu_layers)
    for index, case in enumerate(cases):
        prompt_ids = scorer.tokenize(case.prompt_text.encode(), add_bos=False, special=True)
        ids, dropped = _cut(scorer.tokenize((case.prompt_text + case.answer_text).encode(), add_bos=False,
                                            special=True), n_ctx)
        scorer.reset()
        scorer.eval(ids)
        logprobs = log_softmax(np.asarray(scorer.scores[:len(ids) - 1], dtype=np.float32))
        scores.add_logprobs(ids, logprobs, len(prompt_ids) - dropped, _reference(request, index, ids, logprobs))
    for number, ids in enumerate(request.kld_chunks or [], len(cases)):   # text for KLD alone
        scorer.reset()
        scorer.eval(ids)
        logprobs = log_softmax(np.asarray(scorer.scores[:len(ids) - 1], dtype=np.float32))
        reference = _reference(request, number, ids, logprobs)
        if reference is not None:
            scores.compare(logprobs, reference)
    return scores.result(answers, rss)


def run_hf(request: Request) -> Answer:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(request.path)
    model = AutoModelForCausalLM.from_pretrained(request.path, dtype=dtype).to(device).eval()
    stop_ids = sorted({tokenizer.eos_token_id} | {tokenizer.convert_tokens_to_ids(s) for s in request.stops
                                                  if s in tokenizer.get_vocab()} - {None})
    n_ctx, budget = request.n_ctx, request.max_new_tokens
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)  # CUDA runs asynchronously
    scores, answers = Scores(), []
    to_answer = [case for case in request.cases if case.generate]
    for index, case in enumerate(to_answer):
        prompt, _ = _cut(tokenizer.encode(case.prompt_text, add_special_tokens=False), n_ctx - budget)
        inputs = torch.tensor([prompt], device=device)
        with torch.no_grad():
            started = time.perf_counter()
            model(inputs)
            sync()
            prefill = time.perf_counter() - started
            started = time.perf_counter()
            generated = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=budget,
                                       do_sample=False, eos_token_id=stop_ids, pad_token_id=stop_ids[0])
            sync()
            seconds = time.perf_counter() - started - prefill  # generate prefills once more itself
        new = [t for t in generated[0, len(prompt):].tolist() if t not in stop_ids]
        answers.append(_strip(tokenizer.decode(new, skip_special_tokens=False), request.stops))
        scores.prompt_tokens += len(prompt)
        scores.prompt_seconds += prefill
        if new and seconds > 0:
            scores.generated_tokens += len(new)
            scores.generation_seconds += seconds
        print(f"    {request.path.name}: answer {index + 1}/{len(to_answer)}", flush=True)
    rss = peak_rss_bytes()
    for index, case in enumerate(request.cases):
        prompt_ids = tokenizer.encode(case.prompt_text, add_special_tokens=False)
        ids, dropped = _cut(tokenizer.encode(case.prompt_text + case.answer_text, add_special_tokens=False),
                            n_ctx)
        with torch.no_grad():
            logits = model(torch.tensor([ids], device=device)).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1).cpu().numpy()
        scores.add_logprobs(ids, logprobs, len(prompt_ids) - dropped, _reference(request, index, ids, logprobs))
    return scores.result(answers, rss)


def _reference(request: Request, index: int, ids: list[int], logprobs) -> Any:
    """Save this run's log-probabilities of case `index` as the reference (`save_logprobs`), or load the
    reference's to compare with (`reference_logprobs`): KLD needs the same tokens on both sides."""
    save, compare = request.save_logprobs, request.reference_logprobs
    reference = None
    if compare:
        reference_ids = json.loads((compare / f"{index}.json").read_text())
        if reference_ids != ids:
            raise SystemExit(f"case {index + 1}: the tokenization differs from the reference model's; KLD "
                             f"needs identical tokens")
        reference = np.load(compare / f"{index}.npy").astype(np.float64)
    if save:
        np.save(save / f"{index}.npy", logprobs.astype(np.float32))
        (save / f"{index}.json").write_text(json.dumps(ids))
    return reference


def _strip(text: str, stops: list[str]) -> str:
    for stop in stops:
        if stop and stop in text:
            text = text[:text.index(stop)]
    return text.strip()


def main(argv: list[str]) -> int:
    request = Request.read(Path(argv[1]))
    answer = (run_gguf if request.kind == GGUF else run_hf)(request)   # HF, or VLLM: compressed-tensors
    answer.write(Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
