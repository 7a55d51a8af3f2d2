"""smoke: load the quantized GGUF in llama.cpp, chat through the GGUF's own chat template
(greedy, so answers are reproducible) and record the answers and tokens/s."""

from __future__ import annotations

import json
import time

from ..adapters import llama_cpp
from ..errors import StageError
from ..facts import layout
from . import ggufs
from .context import StageContext

DEFAULT_QUESTIONS = ("Hello! Who are you?",)


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    gguf = ggufs.gguf(ctx.inputs["quantize"])
    llm = llama_cpp.load(gguf, n_ctx=cfg.smoke.n_ctx)
    system = [{"role": "system", "content": cfg.prompt.system}] if cfg.prompt.system else []
    results = []
    for question in list(cfg.smoke.questions) or DEFAULT_QUESTIONS:
        started = time.perf_counter()
        try:
            reply = llm.create_chat_completion(messages=[*system, {"role": "user", "content": question}],
                                               temperature=0.0, top_k=1, max_tokens=cfg.smoke.max_tokens, seed=0)
        except ValueError as err:   # llama.cpp: "Requested tokens (N) exceed context window of M"
            raise StageError(f"the smoke test's prompt (prompt.system and the question {question!r}) does not fit "
                             f"smoke.n_ctx={cfg.smoke.n_ctx} ({err}). Raise smoke.n_ctx or shorten "
                             f"prompt.system.") from None
        seconds = time.perf_counter() - started
        tokens = reply["usage"]["completion_tokens"]
        answer = (reply["choices"][0]["message"].get("content") or "").strip()
        results.append({"question": question, "answer": answer, "completion_tokens": tokens,
                        "finish_reason": reply["choices"][0].get("finish_reason"),
                        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None})
        ctx.say(f"{question}  ->  {' '.join(answer.split())[:100] or '(no answer)'}")
    (ctx.out / layout.SMOKE_ANSWERS).write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n",
                                                encoding="utf-8")
    lines = [f"# Smoke test: {gguf.name}", "", "Greedy decoding through the GGUF's chat template.", ""]
    for item in results:
        lines += [f"**Q:** {item['question']}", "", f"**A:** {item['answer']}", "",
                  f"_{item['completion_tokens']} tokens, {item['tokens_per_second']} tokens/s, "
                  f"stopped: {item['finish_reason']}_", ""]
    (ctx.out / layout.SMOKE_MARKDOWN).write_text("\n".join(lines), encoding="utf-8")
