"""vllm: a folder to serve the merged model with vLLM: the chat template file and the
`vllm serve` command line (served name, chat template, tool-call parser for the family)."""

from __future__ import annotations

import json
import os
import shlex
import shutil

from ..facts import layout
from . import chat
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    settings = cfg.target.vllm
    merged = ctx.inputs["merge"] / layout.MERGED
    shutil.copy2(ctx.inputs["merge"] / layout.CHAT_TEMPLATE, ctx.out / layout.CHAT_TEMPLATE)
    family = chat.recorded(ctx.inputs["merge"]).chat_family
    parser = settings.tool_call_parser or (family.vllm_tool_parser if family else None)
    argv = ["vllm", "serve", ctx.relative(merged), "--served-model-name", settings.served_model_name or cfg.model.name,
            "--chat-template", layout.CHAT_TEMPLATE]
    if parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
    if settings.max_model_len:
        argv += ["--max-model-len", str(settings.max_model_len)]
    argv += ["--host", "127.0.0.1", "--port", str(settings.port), *settings.extra_args]
    (ctx.out / layout.VLLM_COMMAND).write_text(json.dumps(argv, indent=1) + "\n", encoding="utf-8")
    script = ctx.templates.render(layout.VLLM_SERVE_TEMPLATE, model=cfg.model.name, key=ctx.key, port=settings.port,
                                  command=" ".join(shlex.quote(a) for a in argv))
    (ctx.out / layout.SERVE_SCRIPT).write_text(script, encoding="utf-8")
    os.chmod(ctx.out / layout.SERVE_SCRIPT, 0o755)
    ctx.say(f"vLLM: bash {ctx.out.parent.name}/{ctx.key}/{layout.SERVE_SCRIPT} ({' '.join(argv[3:])})")
