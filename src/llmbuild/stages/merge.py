"""merge: fold the adapter into the base with `llamafactory-cli export`, then write the build's chat
template (chat/setup.py: the model's own, or llmbuild's) and its end-of-turn ids into the merged
folder (the GGUF inherits both), and record the chat setup for every later stage."""

from __future__ import annotations

from ..adapters import hf_tokenizer, llamafactory
from ..errors import StageError
from ..facts import layout
from . import chat
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    # the chat template comes from the model the pipeline started from ("origin"), however many stages trained it
    origin = ctx.inputs.get("origin", ctx.inputs["base"])
    setup = chat.choose_for(cfg, ctx.templates, hf_tokenizer.load_tokenizer(origin))
    args = llamafactory.export_args(
        base=ctx.relative(ctx.inputs["base"]), adapter=ctx.relative(ctx.inputs["train"] / layout.ADAPTER),
        export_dir=layout.MERGED, trust_remote_code=cfg.model.trust_remote_code)
    by_hand = layout.BY_HAND_OUTPUT.format(stage=ctx.out.parent.name, key=ctx.key)
    llamafactory.write_yaml(args, ctx.out, f"LLaMA-Factory merge, written by llmbuild ({ctx.key}). Run by hand (the "
                                           f"merged model goes to {by_hand}; this artifact stays as built): "
                                           f"cd {ctx.out.parent.name}/{ctx.key} && llamafactory-cli export "
                                           f"{layout.LLAMAFACTORY_YAML} export_dir={by_hand}")
    llamafactory.run("export", ctx.out, offline=True, verbose=ctx.verbose)
    merged = ctx.out / layout.MERGED
    if not (merged / "config.json").is_file():
        raise StageError("llamafactory-cli export finished without a merged model; see export.log")
    llamafactory.drop_export_modelfile(merged)
    family = setup.chat_family
    try:
        eos_ids, saved = hf_tokenizer.set_chat_format(merged, setup.template, family.eos if family else None)
    except hf_tokenizer.UnknownToken as err:
        raise StageError(f"the {family.name} chat format ends turns with {err.args[0]!r}, which is not a token of "
                         f"this model's tokenizer; pick another prompt.template") from None
    # the base: the model this stage trained (in a pipeline, the earlier stage's merged folder, which
    # kept its own copy here); the origin gives only the chat template
    kept = hf_tokenizer.keep_sentencepiece_vocabulary(ctx.inputs["base"], merged, saved)
    (ctx.out / layout.CHAT_TEMPLATE).write_text(setup.template, encoding="utf-8")
    (ctx.out / chat.RECORD).write_text(setup.to_json(), encoding="utf-8")
    ctx.say(f"chat template: {setup.source} ({setup.family or 'no known family'}); generation stops at token "
            f"ids {eos_ids}" + (f"; for llama.cpp's converter: {', '.join(kept)}" if kept else ""))
