"""smoke: load the quantized GGUF in llama.cpp, chat through the GGUF's own chat template
(greedy, so answers are reproducible) and record the answers and tokens/s."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ..adapters.process import run_logged
from ..errors import StageError, ToolError
from ..facts import layout
from . import ggufs
from .context import StageContext

DEFAULT_QUESTIONS = ("Hello! Who are you?",)
WORKER = "llmbuild.adapters.smoke_worker"   # run as `python -m`: llama.cpp generates in a process of its own


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    gguf = ggufs.gguf(ctx.inputs["quantize"])
    request = {"gguf": str(gguf), "n_ctx": cfg.smoke.n_ctx, "system": cfg.prompt.system or "",
               "questions": list(cfg.smoke.questions) or list(DEFAULT_QUESTIONS), "max_tokens": cfg.smoke.max_tokens}
    got = _chat(ctx, request, gguf.name)
    if "load_error" in got:
        raise ToolError(f"llama.cpp cannot load {gguf.name}: {got['load_error']}")
    if "too_long" in got:
        raise StageError(f"the smoke test's prompt (prompt.system and the question {got['too_long']!r}) does not fit "
                         f"smoke.n_ctx={cfg.smoke.n_ctx} ({got['error']}). Raise smoke.n_ctx or shorten "
                         f"prompt.system.")
    results = got["answers"]
    for item in results:
        ctx.say(f"{item['question']}  ->  {' '.join(item['answer'].split())[:100] or '(no answer)'}")
    (ctx.out / layout.SMOKE_ANSWERS).write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n",
                                                encoding="utf-8")
    lines = [f"# Smoke test: {gguf.name}", "", "Greedy decoding through the GGUF's chat template.", ""]
    for item in results:
        lines += [f"**Q:** {item['question']}", "", f"**A:** {item['answer']}", "",
                  f"_{item['completion_tokens']} tokens, {item['tokens_per_second']} tokens/s, "
                  f"stopped: {item['finish_reason']}_", ""]
    (ctx.out / layout.SMOKE_MARKDOWN).write_text("\n".join(lines), encoding="utf-8")


def _chat(ctx: StageContext, request: dict, name: str) -> dict:
    """The worker's answers (its request and answers pass through scratch inside the unfinished artifact)."""
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=ctx.out) as scratch:
        request_file, answers_file = Path(scratch) / "request.json", Path(scratch) / "answers.json"
        request_file.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
        run_logged([sys.executable, "-m", WORKER, str(request_file), str(answers_file)], ctx.out / layout.SMOKE_LOG,
                   what=f"llama.cpp chatting with {name}", quiet=not ctx.verbose)
        return json.loads(answers_file.read_text(encoding="utf-8"))
