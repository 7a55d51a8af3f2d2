"""parity: render a fixed conversation suite through LLaMA-Factory's training template, the merged
model's chat template (transformers) and the GGUF's (llama-cpp-python), and tokenize a multilingual
corpus with the merged tokenizer and with llama.cpp; any difference fails the build with a diff,
before a mismatched prompt format or vocabulary reaches a user."""

from __future__ import annotations

import json

from ..adapters import hf_tokenizer, llama_cpp, llamafactory
from ..adapters.llama_cpp_vocab import open_vocab
from ..chat import parity
from ..errors import StageError
from ..facts import layout
from ..facts.chat_families import FAMILIES
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    family = FAMILIES[cfg.chat_format]
    merged = ctx.inputs["merge"] / layout.MERGED
    gguf = layout.converted_gguf(ctx.inputs["convert"], cfg.model.name, cfg.quant.convert_type)
    tokenizer = hf_tokenizer.load_tokenizer(merged)
    with open_vocab(gguf) as vocab:  # one llama.cpp load for the metadata and the token ids
        meta = vocab.metadata()
        mismatched = parity.tokenizer_mismatches(hf_tokenizer.token_ids(tokenizer), vocab.token_ids,
                                                 list(tokenizer.all_special_tokens))
    if mismatched:
        raise StageError("the GGUF tokenizes differently from the merged model (llama.cpp would see other tokens "
                         "than training did):\n" + "\n".join(mismatched))
    gguf_template = llama_cpp.chat_formatter(meta.get("tokenizer.chat_template") or "", meta.bos_token,
                                             meta.end_tokens[0] if meta.end_tokens else "")
    renderers = {
        "llamafactory (training)": llamafactory.training_renderer(hf_tokenizer.load_tokenizer(merged),
                                                                  family.llamafactory_template, cfg.prompt.system),
        "transformers (merged model)": hf_tokenizer.chat_renderer(tokenizer),
        "llama-cpp-python (GGUF)": parity.conversation_renderer(gguf_template),
    }
    results = parity.compare(parity.suite(family.tools), renderers)
    (ctx.out / "parity.md").write_text(parity.report(results), encoding="utf-8")
    (ctx.out / "parity.json").write_text(json.dumps([r.__dict__ for r in results], ensure_ascii=False, indent=1),
                                         encoding="utf-8")
    differing = [r for r in results if not r.agrees]
    if differing:
        first = differing[0]
        raise StageError(f"the {family.name} prompt format differs between renderings for "
                         f"{len(differing)} of {len(results)} conversations; fix templates/{family.chat_template} "
                         f"(report: parity.md). First difference, '{first.conversation}':\n{first.diff()}")
    ctx.say(f"{family.name}: {len(results)} conversations render identically in {', '.join(renderers)}; "
            f"token ids equal llama.cpp's on {len(parity.TOKENIZER_CORPUS) + 1} texts")
