"""vllm: a folder to serve the merged model with vLLM: the chat template file and the
`vllm serve` command line (served name, chat template, tool-call parser for the family)."""

from __future__ import annotations

import json
import os
import shlex
import shutil

from ..config.validate import chat_family
from ..templating import render_file
from .context import StageContext

# vLLM's tool-call parsers for the formats llmbuild trains (vLLM docs, "Tool Calling")
TOOL_CALL_PARSERS = {"qwen": "hermes", "llama3": "llama3_json"}


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    settings = cfg.target.vllm
    merged = ctx.inputs["merge"] / "merged"
    shutil.copy2(ctx.inputs["merge"] / "chat_template.jinja", ctx.out / "chat_template.jinja")
    parser = settings.tool_call_parser or TOOL_CALL_PARSERS.get(chat_family(cfg))
    argv = ["vllm", "serve", ctx.relative(merged), "--served-model-name", settings.served_model_name or cfg.model.name,
            "--chat-template", "chat_template.jinja"]
    if parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
    if settings.max_model_len:
        argv += ["--max-model-len", str(settings.max_model_len)]
    argv += ["--host", "127.0.0.1", "--port", str(settings.port), *settings.extra_args]
    (ctx.out / "vllm_command.json").write_text(json.dumps(argv, indent=1) + "\n", encoding="utf-8")
    script = render_file(ctx.root, "vllm/serve.sh.j2", model=cfg.model.name, key=ctx.key, port=settings.port,
                         command=" ".join(shlex.quote(a) for a in argv))
    (ctx.out / "serve.sh").write_text(script, encoding="utf-8")
    os.chmod(ctx.out / "serve.sh", 0o755)
    ctx.say(f"vLLM: bash {ctx.out.parent.name}/{ctx.key}/serve.sh ({' '.join(argv[3:])})")
