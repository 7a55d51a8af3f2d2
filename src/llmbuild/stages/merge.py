"""merge: fold the adapter into the base with `llamafactory-cli export`, then write the chat
template and the EOS ids of the chosen family into the merged folder (the GGUF inherits both)."""

from __future__ import annotations

from ..adapters import llamafactory
from ..chat_families import FAMILIES
from ..chat_template import hf_chat_template
from ..config.validate import chat_family
from ..errors import StageError
from .context import StageContext

MERGED = "merged"


def run(ctx: StageContext) -> None:
    args = llamafactory.export_args(
        ctx.cfg,
        base=ctx.relative(ctx.inputs["base"]),
        adapter=ctx.relative(ctx.inputs["train"] / "adapter"),
        export_dir=MERGED,
    )
    llamafactory.write_yaml(args, ctx.out, f"LLaMA-Factory merge, written by llmbuild ({ctx.key}). "
                                           f"Run by hand: cd {ctx.out.parent.name}/{ctx.key} && llamafactory-cli export {llamafactory.YAML_NAME}")
    llamafactory.run("export", ctx.out, offline=True)
    if not (ctx.out / MERGED / "config.json").is_file():
        raise StageError("llamafactory-cli export finished without a merged model; see export.log")
    _set_chat_format(ctx)


def _set_chat_format(ctx: StageContext) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    family = FAMILIES[chat_family(ctx.cfg)]
    folder = ctx.out / MERGED
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = hf_chat_template(ctx.root, family.name, ctx.cfg.prompt.system)
    eos_ids = []
    for token in (family.eos, tokenizer.eos_token):
        if token is None:
            continue
        index = tokenizer.convert_tokens_to_ids(token)
        if index is None or index == tokenizer.unk_token_id and token != tokenizer.unk_token:
            raise StageError(f"the {family.name} chat format ends turns with {token!r}, which is not a token of this "
                             f"model's tokenizer; pick another prompt.template")
        if index not in eos_ids:
            eos_ids.append(index)
    if family.eos:
        tokenizer.eos_token = family.eos
    tokenizer.save_pretrained(folder)
    try:
        generation = GenerationConfig.from_pretrained(folder)
    except OSError:
        generation = GenerationConfig()
    generation.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    generation.save_pretrained(folder)
    (ctx.out / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
    ctx.say(f"chat template: {family.name}; generation stops at token ids {eos_ids}")
