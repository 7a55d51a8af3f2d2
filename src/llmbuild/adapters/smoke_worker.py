"""Chat with a GGUF in llama.cpp in a process of its own (the smoke test):
    python -m llmbuild.adapters.smoke_worker request.json answers.json

llama.cpp's generation runs here and not inside doit's process, so that a crash in the C++ library
(an uncaught exception, a failed GGML_ASSERT, a segfault) ends this process only and the smoke stage
reports it as one error. (A forked copy of doit cannot generate: ggml computes with OpenMP, and GNU
OpenMP hangs in the forked child of a process that has used it.)

The request: {"gguf", "n_ctx", "system", "questions", "max_tokens"}. The answers: {"answers": [{question,
answer, completion_tokens, finish_reason, tokens_per_second}, ...]}, or {"too_long": question, "error":
llama.cpp's words} when a prompt does not fit the context. Greedy decoding through the GGUF's own chat
template (llama-cpp-python's `create_chat_completion`, as its server uses it)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def chat(request: dict[str, Any]) -> dict[str, Any]:
    from llama_cpp import Llama

    gguf = request["gguf"]
    try:
        llm = Llama(model_path=gguf, n_ctx=request["n_ctx"], seed=0, verbose=False)
    except (ValueError, RuntimeError) as err:
        return {"load_error": str(err)}
    system = [{"role": "system", "content": request["system"]}] if request["system"] else []
    answers = []
    for question in request["questions"]:
        started = time.perf_counter()
        try:
            reply = llm.create_chat_completion(messages=[*system, {"role": "user", "content": question}],
                                               temperature=0.0, top_k=1, max_tokens=request["max_tokens"], seed=0)
        except ValueError as err:   # llama.cpp: "Requested tokens (N) exceed context window of M"
            return {"too_long": question, "error": str(err)}
        seconds = time.perf_counter() - started
        tokens = reply["usage"]["completion_tokens"]
        answers.append({"question": question,
                        "answer": (reply["choices"][0]["message"].get("content") or "").strip(),
                        "completion_tokens": tokens, "finish_reason": reply["choices"][0].get("finish_reason"),
                        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None})
        print(f"answered {len(answers)}/{len(request['questions'])}", flush=True)
    llm.close()
    return {"answers": answers}


def main(argv: list[str]) -> int:
    request_file, answers_file = (Path(arg) for arg in argv)
    request = json.loads(request_file.read_text(encoding="utf-8"))
    answers_file.write_text(json.dumps(chat(request), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
