"""render: the Ollama folder: the quantized GGUF beside a Modelfile whose TEMPLATE, stop tokens and
SYSTEM come from the same chat family the adapter was trained with."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..chat_families import FAMILIES
from ..chat_template import ollama_template
from ..config.validate import chat_family
from ..errors import StageError
from ..gguf_meta import read_metadata
from ..naming import gguf_file
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    family = FAMILIES[chat_family(cfg)]
    gguf = ctx.inputs["quantize"] / gguf_file(cfg.model.name, cfg.quant.type)
    _link_or_copy(gguf, ctx.out / gguf.name)
    eos = list(read_metadata(gguf).end_tokens)
    stop = list(dict.fromkeys([*family.stop, *eos, *cfg.prompt.stop]))
    template = ollama_template(ctx.root, family.name, eos_token=eos[0] if eos else "")
    _check_quotable("the Ollama TEMPLATE", template, '"""')
    _check_quotable("prompt.system", cfg.prompt.system, '"""')
    for token in stop:
        _check_quotable(f"stop token {token!r}", token, '"')
    # the artifact is shared by every variant that needs it, so it names none of them
    model_name = (cfg.target.ollama.model_name if cfg.target.ollama else None) or "<name>"
    text = _environment(ctx.root).get_template("Modelfile.j2").render(
        model=cfg.model.name, stage_key=ctx.key, family=family.name, model_name=model_name,
        gguf_file=gguf.name, template=template, system=cfg.prompt.system,
        temperature=cfg.prompt.temperature, top_p=cfg.prompt.top_p, top_k=cfg.prompt.top_k,
        repeat_penalty=cfg.prompt.repeat_penalty, num_ctx=cfg.prompt.num_ctx,
        num_predict=cfg.prompt.num_predict, stop=stop,
    )
    (ctx.out / "Modelfile").write_text(text, encoding="utf-8")
    ctx.say(f"Modelfile: {family.name} TEMPLATE, stop {stop}, temperature {cfg.prompt.temperature}")


def _environment(root: Path) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(loader=jinja2.FileSystemLoader(root / "templates"), trim_blocks=True,
                                         lstrip_blocks=True, keep_trailing_newline=True,
                                         undefined=jinja2.StrictUndefined, autoescape=False)


def _check_quotable(what: str, text: str, quote: str) -> None:
    # Modelfile strings have no escape sequences: the closing quote cannot appear inside
    if quote in text:
        raise StageError(f"{what} contains {quote}, which an Ollama Modelfile cannot quote. Remove it.")


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
