"""render: the Ollama folder: the quantized GGUF beside a Modelfile whose TEMPLATE, stop tokens and
SYSTEM come from the same chat family the adapter was trained with."""

from __future__ import annotations

from .. import modelfile
from ..chat_families import FAMILIES
from ..chat_template import ollama_template
from ..config.validate import chat_family
from ..errors import StageError
from ..files import link_or_copy
from ..gguf_meta import read_metadata
from ..naming import gguf_file
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    family = FAMILIES[chat_family(cfg)]
    gguf = ctx.inputs["quantize"] / gguf_file(cfg.model.name, cfg.quant.type)
    link_or_copy(gguf, ctx.out / gguf.name)
    end_tokens = list(read_metadata(gguf).end_tokens)
    stop = list(dict.fromkeys([*family.stop, *end_tokens, *cfg.prompt.stop]))
    prompt = cfg.prompt
    ollama = cfg.target.ollama
    name = (ollama.model_name if ollama else None) or "<name>"  # the artifact is shared: it names no variant
    spec = modelfile.Modelfile(
        gguf_file=gguf.name,
        template=ollama_template(ctx.root, family.name, eos_token=end_tokens[0] if end_tokens else ""),
        header=[f"Ollama Modelfile: {cfg.model.name} fine-tuned by llmbuild (render key {ctx.key}).",
                f"  ollama create {name} -f Modelfile",
                f"  ollama run {name}",
                f"TEMPLATE is the {family.name} chat format the adapter was trained with."],
        system=prompt.system,
        parameters=[("temperature", prompt.temperature), ("top_p", prompt.top_p), ("top_k", prompt.top_k),
                    ("repeat_penalty", prompt.repeat_penalty), ("num_ctx", prompt.num_ctx),
                    *([("num_predict", prompt.num_predict)] if prompt.num_predict != -1 else []),
                    *(("stop", token) for token in stop)],
        messages=[(m.role, m.content) for m in (ollama.messages if ollama else [])],
        license=cfg.model.license,
    )
    try:
        text = modelfile.render(spec, ctx.root)
    except modelfile.ModelfileError as err:
        raise StageError(str(err)) from None
    (ctx.out / "Modelfile").write_text(text, encoding="utf-8")
    ctx.say(f"Modelfile: {family.name} TEMPLATE, stop {stop}, temperature {prompt.temperature}")
