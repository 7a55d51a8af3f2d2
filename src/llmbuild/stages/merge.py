"""merge: fold the adapter into the base with `llamafactory-cli export`, then write the chat
template and the EOS ids of the chosen family into the merged folder (the GGUF inherits both)."""

from __future__ import annotations

from ..adapters import hf_tokenizer, llamafactory
from ..chat.templates import hf_chat_template
from ..errors import StageError
from ..facts import layout
from ..facts.chat_families import FAMILIES
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    family = FAMILIES[cfg.chat_format]
    args = llamafactory.export_args(
        base=ctx.relative(ctx.inputs["base"]), adapter=ctx.relative(ctx.inputs["train"] / layout.ADAPTER),
        export_dir=layout.MERGED, template=family.llamafactory_template, default_system=cfg.prompt.system,
        trust_remote_code=cfg.model.trust_remote_code)
    llamafactory.write_yaml(args, ctx.out, f"LLaMA-Factory merge, written by llmbuild ({ctx.key}). Run by hand: "
                                           f"cd {ctx.out.parent.name}/{ctx.key} && llamafactory-cli export "
                                           f"{layout.LLAMAFACTORY_YAML}")
    llamafactory.run("export", ctx.out, offline=True, verbose=ctx.verbose)
    merged = ctx.out / layout.MERGED
    if not (merged / "config.json").is_file():
        raise StageError("llamafactory-cli export finished without a merged model; see export.log")
    template = hf_chat_template(ctx.templates.text(family.chat_template), cfg.prompt.system, family.chat_template)
    try:
        eos_ids = hf_tokenizer.set_chat_format(merged, template, family.eos)
    except hf_tokenizer.UnknownToken as err:
        raise StageError(f"the {family.name} chat format ends turns with {err.args[0]!r}, which is not a token of "
                         f"this model's tokenizer; pick another prompt.template") from None
    (ctx.out / layout.CHAT_TEMPLATE).write_text(template, encoding="utf-8")
    ctx.say(f"chat template: {family.name}; generation stops at token ids {eos_ids}")
