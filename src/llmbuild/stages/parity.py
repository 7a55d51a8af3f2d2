"""parity: render a fixed conversation suite through LLaMA-Factory's training template, the merged
model's chat template (transformers) and the GGUF's (llama-cpp-python), and tokenize a multilingual
corpus with the merged tokenizer and with llama.cpp; any difference fails the build with a diff,
before a mismatched prompt format or vocabulary reaches a user."""

from __future__ import annotations

import json

from .. import parity
from ..chat_families import FAMILIES
from ..config.validate import chat_family
from ..errors import StageError
from ..gguf_meta import open_vocab
from ..naming import gguf_file
from .context import StageContext


def run(ctx: StageContext) -> None:
    from transformers import AutoTokenizer

    cfg = ctx.cfg
    family = FAMILIES[chat_family(cfg)]
    merged = ctx.inputs["merge"] / "merged"
    gguf = ctx.inputs["convert"] / gguf_file(cfg.model.name, cfg.quant.convert_type)
    tokenizer = AutoTokenizer.from_pretrained(merged)
    with open_vocab(gguf) as vocab:  # one llama.cpp load for the metadata and the token ids
        meta = vocab.metadata()
        mismatched = parity.tokenizer_mismatches(tokenizer, vocab.token_ids, list(tokenizer.all_special_tokens))
    if mismatched:
        raise StageError("the GGUF tokenizes differently from the merged model (llama.cpp would see other tokens "
                         "than training did):\n" + "\n".join(mismatched))
    renderers = {
        "llamafactory (training)": parity.llamafactory_renderer(*_llamafactory_template(merged, family, cfg)),
        "transformers (merged model)": parity.hf_renderer(tokenizer),
        "llama-cpp-python (GGUF)": parity.gguf_renderer(meta.get("tokenizer.chat_template") or "",
                                                        meta.bos_token, meta.end_tokens[0] if meta.end_tokens else ""),
    }
    results = parity.compare(parity.suite(family.tools), renderers)
    text = parity.report(results)
    (ctx.out / "parity.md").write_text(text, encoding="utf-8")
    (ctx.out / "parity.json").write_text(json.dumps([r.__dict__ for r in results], ensure_ascii=False, indent=1),
                                         encoding="utf-8")
    differing = [r for r in results if not r.agrees]
    if differing:
        first = differing[0]
        raise StageError(f"the {family.name} prompt format differs between renderings for "
                         f"{len(differing)} of {len(results)} conversations; fix templates/chat/{family.name}.jinja "
                         f"(report: parity.md). First difference, '{first.conversation}':\n{first.diff()}")
    ctx.say(f"{family.name}: {len(results)} conversations render identically in {', '.join(renderers)}; "
            f"token ids equal llama.cpp's on {len(parity.TOKENIZER_CORPUS) + 1} texts")


def _llamafactory_template(merged, family, cfg):
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(merged)  # LLaMA-Factory adjusts its own copy
    data_args = DataArguments(template=family.llamafactory_template, default_system=cfg.prompt.system)
    return get_template_and_fix_tokenizer(tokenizer, data_args), tokenizer
