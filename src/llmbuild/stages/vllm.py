"""vllm: a folder to serve the build with vLLM: the chat template file and the command line of vLLM's
OpenAI-compatible server (served name, chat template, tool-call parser for the family) for the format
target.vllm.serve names: the merged model (merged) or one of the vLLM checkpoints."""

from __future__ import annotations

import json
import os
import shlex
import shutil

from ..adapters.vllm_server import SERVER_MODULE
from ..facts import layout
from ..facts.vllm_schemes import MERGED
from . import chat
from .context import StageContext

PYTHON = "python"   # vllm_command.json's first word: the Python of vLLM's environment (serve.sh: $VLLM_PYTHON)


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    settings = cfg.target.vllm
    served = (ctx.inputs["merge"] / layout.MERGED if settings.serve == MERGED
              else ctx.inputs[layout.vllm_slot(settings.serve)] / layout.QUANTIZED_MODEL)
    shutil.copy2(ctx.inputs["merge"] / layout.CHAT_TEMPLATE, ctx.out / layout.CHAT_TEMPLATE)
    family = chat.recorded(ctx.inputs["merge"]).chat_family
    parser = settings.tool_call_parser or (family.vllm_tool_parser if family else None)
    argv = [PYTHON, "-m", SERVER_MODULE, "--model", ctx.relative(served),
            "--served-model-name", settings.served_model_name or cfg.model.name,
            "--chat-template", layout.CHAT_TEMPLATE]
    if parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
    if settings.max_model_len:
        argv += ["--max-model-len", str(settings.max_model_len)]
    argv += ["--host", "127.0.0.1", "--port", str(settings.port), *settings.extra_args]
    (ctx.out / layout.VLLM_COMMAND).write_text(json.dumps(argv, indent=1) + "\n", encoding="utf-8")
    script = ctx.templates.render(layout.VLLM_SERVE_TEMPLATE, model=cfg.model.name, key=ctx.key, port=settings.port,
                                  served=settings.serve, command=" ".join(shlex.quote(a) for a in argv[1:]))
    (ctx.out / layout.SERVE_SCRIPT).write_text(script, encoding="utf-8")
    os.chmod(ctx.out / layout.SERVE_SCRIPT, 0o755)
    what = "the merged model" if settings.serve == MERGED else f"the {settings.serve} checkpoint"
    ctx.say(f"vLLM serves {what}: bash {ctx.out.parent.name}/{ctx.key}/{layout.SERVE_SCRIPT} "
            f"(OpenAI API on http://127.0.0.1:{settings.port}/v1)")
