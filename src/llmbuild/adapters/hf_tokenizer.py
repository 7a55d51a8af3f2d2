"""transformers: a model folder's tokenizer, a chat template rendered by apply_chat_template, and
the chat template and end-of-turn ids written into a model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..chat.conversation import for_template
from ..facts.chat_families import TEMPLATE_VARIABLES


class UnknownToken(ValueError):
    """A token text that is not in the tokenizer's vocabulary."""


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def own_chat_template(tokenizer) -> str | None:
    """The chat template a model folder's tokenizer was loaded with (tokenizer_config.json or
    chat_template.jinja; a named set of templates gives its default one), or None."""
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    return template or None


def template_renderer(tokenizer, chat_template: str | None = None) -> Callable[[list, list, bool], str]:
    """(messages, tools, add_generation_prompt) -> text through `chat_template` (None: the
    tokenizer's own) with transformers' apply_chat_template: its Jinja environment, the
    tokenizer's special tokens, and llmbuild's fixed template variables (the date)."""
    def render(messages: list, tools: list, add_generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(for_template(messages), tools=tools or None, chat_template=chat_template,
                                             add_generation_prompt=add_generation_prompt, tokenize=False,
                                             **TEMPLATE_VARIABLES)
    return render


def token_ids(tokenizer) -> Callable[[str], list[int]]:
    """text -> the tokenizer's ids, special tokens parsed, none added (as llama.cpp tokenizes)."""
    return lambda text: tokenizer.encode(text, add_special_tokens=False)


def set_chat_format(folder: Path, chat_template: str, eos: str | None) -> list[int]:
    """Write `chat_template` into the folder's tokenizer and make generation stop where the model's
    generation config says, at `eos` (the format's end of turn; None: the tokenizer's EOS) and at
    the tokenizer's EOS. Returns the generation config's EOS ids."""
    from transformers import AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = chat_template
    try:
        generation = GenerationConfig.from_pretrained(folder)
    except OSError:
        generation = GenerationConfig()
    own = generation.eos_token_id   # the model's own stops come first
    eos_ids = [own] if isinstance(own, int) else list(own or [])
    for token in (eos, tokenizer.eos_token):
        if token is None:
            continue
        index = tokenizer.convert_tokens_to_ids(token)
        if index is None or index == tokenizer.unk_token_id and token != tokenizer.unk_token:
            raise UnknownToken(token)
        if index not in eos_ids:
            eos_ids.append(index)
    if eos:
        tokenizer.eos_token = eos
    tokenizer.save_pretrained(folder)
    generation.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    generation.save_pretrained(folder)
    return eos_ids


def count_tokens(folder: Path, text: str) -> int:
    """How many tokens `text` is for the model in `folder` (no special tokens added)."""
    return len(load_tokenizer(folder).encode(text, add_special_tokens=False))


def weight_module_names(folder: Path) -> set[str]:
    """The names of the model's modules that hold a 2-D weight (the linear layers LoRA can adapt,
    embeddings and the output head), read from the safetensors headers: no weight is loaded."""
    from safetensors import safe_open

    names = set()
    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="np") as handle:
            for key in handle.keys():
                if key.endswith(".weight") and len(handle.get_slice(key).get_shape()) == 2:
                    names.add(key[:-len(".weight")].rsplit(".", 1)[-1])
    return names
