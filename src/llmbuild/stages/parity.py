"""parity: render a fixed conversation suite through every consumer of the build's chat template and
compare, for each conversation, the prompt the model is given before its last answer: the
publisher's own template (when the model ships one), LLaMA-Factory's encoding of the training
sample, the merged model's chat template (transformers; vLLM serves the same file) and the GGUF's
(llama-cpp-python). Each trained answer must end at a stop. A multilingual corpus is tokenized
with the merged tokenizer and with llama.cpp. Any difference fails the build with a diff, before
a mismatched prompt format or vocabulary reaches a user."""

from __future__ import annotations

import copy
import json

from ..adapters import hf_tokenizer, llama_cpp, llamafactory
from ..adapters.llama_cpp_vocab import metadata_and_token_ids
from ..chat import parity
from ..chat.conversation import turn_pieces
from ..chat.setup import OWN
from ..errors import StageError
from ..facts import layout
from . import chat, ggufs
from .context import StageContext


def run(ctx: StageContext) -> None:
    setup = chat.recorded(ctx.inputs["merge"])
    family = setup.chat_family
    merged = ctx.inputs["merge"] / layout.MERGED
    gguf = ggufs.gguf(ctx.inputs["convert"])
    tokenizer = hf_tokenizer.load_tokenizer(merged)
    specials = list(tokenizer.all_special_tokens)
    # one llama.cpp load for the metadata and the token ids
    meta, ids = metadata_and_token_ids(gguf, parity.tokenizer_texts(specials))
    mismatched = parity.tokenizer_mismatches(hf_tokenizer.token_ids(tokenizer), ids, specials)
    if mismatched:
        raise StageError("the GGUF tokenizes differently from the merged model (llama.cpp would see other tokens "
                         "than training did):\n" + "\n".join(mismatched))
    gguf_template = llama_cpp.chat_formatter(meta.get("tokenizer.chat_template") or "", meta.bos_token,
                                             meta.end_tokens[0] if meta.end_tokens else "")
    base_tokenizer = hf_tokenizer.load_tokenizer(ctx.inputs["base"])
    written = hf_tokenizer.template_renderer(base_tokenizer, setup.template)
    stops = setup.stops(base_tokenizer.eos_token)

    def pieces(conversation: parity.Conversation) -> list[tuple[str, str]]:
        """The training sample of the conversation's last answer, as the train stage writes it."""
        return turn_pieces(written, conversation.openai_messages(), conversation.tools, stops)[-1]

    renderers = {}
    if setup.source == OWN:   # the reference: the publisher's template, the system prompt as a message
        own = hf_tokenizer.template_renderer(base_tokenizer, hf_tokenizer.own_chat_template(base_tokenizer))
        renderers["the model's own template"] = parity.prompt_renderer(own, setup.system)
    # LLaMA-Factory changes the tokenizer it is given (its template's tokens): its own copy (a copy in memory
    # takes a third of a new load of a large vocabulary)
    renderers.update({
        "llamafactory (training)": llamafactory.training_renderer(copy.deepcopy(base_tokenizer), pieces),
        "transformers (merged model)": parity.prompt_renderer(hf_tokenizer.template_renderer(tokenizer)),
        "llama-cpp-python (GGUF)": parity.prompt_renderer(gguf_template),
    })
    conversations = parity.suite(family.tools, family.reasoning) if family else parity.SUITE
    results = parity.compare(conversations, renderers)
    (ctx.out / layout.PARITY_REPORT).write_text(parity.report(results), encoding="utf-8")
    (ctx.out / layout.PARITY_RECORD).write_text(json.dumps([r.__dict__ for r in results], ensure_ascii=False, indent=1),
                                         encoding="utf-8")
    compared = [r for r in results if r.renderings]
    differing = [r for r in compared if not r.agrees]
    name = setup.family or "the model's"
    if differing:
        first = differing[0]
        raise StageError(f"the {name} prompt format differs between renderings for {len(differing)} of "
                         f"{len(compared)} conversations ({setup.source}; report: {layout.PARITY_REPORT}). First "
                         f"difference, '{first.conversation}':\n{first.diff()}")
    accepted = [c for c, r in zip(conversations, results, strict=True) if r.renderings]
    unstopped = parity.trained_answer_problems(accepted, pieces, stops)
    if unstopped:
        raise StageError("trained answers that end at no stop (the model would not learn to stop):\n"
                         + "\n".join(unstopped))
    skipped = len(results) - len(compared)
    ctx.say(f"{name}: {len(compared)} conversations prompt identically in {', '.join(renderers)}"
            + (f" ({skipped} the template rejects)" if skipped else "")
            + f"; token ids equal llama.cpp's on {len(parity.TOKENIZER_CORPUS) + 1} texts")
