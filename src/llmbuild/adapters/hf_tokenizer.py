"""transformers: a model folder's tokenizer, a chat template rendered by apply_chat_template, the
chat template and end-of-turn ids written into a model folder, and the SentencePiece model kept
beside a re-saved tokenizer."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from ..chat.conversation import for_template
from ..errors import StageError
from ..facts.chat_families import TEMPLATE_VARIABLES
from ..facts.layout import CHAT_TEMPLATE  # transformers' file name too: where a model folder keeps its template

SENTENCEPIECE_MODEL = "tokenizer.model"   # a SentencePiece tokenizer's pieces, scores and types


class UnknownToken(ValueError):
    """A token text that is not in the tokenizer's vocabulary."""


# Tokenizers this process loaded, by folder and the folder's files as they were (size, mtime): several
# stages of one build read the same tokenizer, and a large vocabulary takes seconds to load
_LOADED: OrderedDict[tuple, Any] = OrderedDict()
_KEEP = 4


def load_tokenizer(folder: Path):
    """The tokenizer of a model folder, loaded once per process while the folder's files stay as
    they are. Shared: change a copy (copy.deepcopy), never the tokenizer returned."""
    from transformers import AutoTokenizer

    folder = Path(folder).resolve()
    key = (str(folder), tuple(sorted((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns)
                                     for entry in os.scandir(folder) if entry.is_file())))   # scandir caches stat
    if key not in _LOADED:
        _LOADED[key] = AutoTokenizer.from_pretrained(folder)
        while len(_LOADED) > _KEEP:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(key)
    return _LOADED[key]


def sentencepiece_kind(tokenizer) -> str | None:
    """What makes the tokenizer a SentencePiece one (its tokenizer.json model: Unigram, or BPE with byte
    fallback, as Llama 2's and Gemma's), or None (byte-level BPE, WordPiece, ...)."""
    model = getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)
    kind = type(model).__name__
    if kind == "Unigram":
        return "a Unigram model"
    if kind == "BPE" and getattr(model, "byte_fallback", False):
        return "a BPE model with byte fallback"
    return None


def has_token(tokenizer, token: str) -> bool:
    """Whether `token` is one token of the tokenizer's vocabulary."""
    index = tokenizer.convert_tokens_to_ids(token)
    return index is not None and (index != tokenizer.unk_token_id or token == tokenizer.unk_token)


def template_syntax_error(tokenizer, chat_template: str) -> Exception | None:
    """The Jinja syntax error transformers' chat-template environment finds in `chat_template`
    (its `lineno` and `message`), or None: the template parses."""
    from jinja2 import TemplateSyntaxError

    try:
        tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], chat_template=chat_template,
                                      tokenize=False, **TEMPLATE_VARIABLES)
    except TemplateSyntaxError as err:
        return err
    except Exception:   # noqa: BLE001 - it parsed; what it does with this conversation is not asked here
        return None
    return None


def own_chat_template_file(folder: Path) -> str:
    """Where a model folder's own chat template is written, for messages."""
    return CHAT_TEMPLATE if (Path(folder) / CHAT_TEMPLATE).is_file() else \
        "tokenizer_config.json (its chat_template)"


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


def strips_after_special_tokens(tokenizer) -> bool:
    """Whether the tokenizer drops the whitespace after some special token (AddedToken rstrip, as
    Phi-3's mark theirs)."""
    return any(token.special and token.rstrip for token in tokenizer.added_tokens_decoder.values())


def set_chat_format(folder: Path, chat_template: str, eos: str | None) -> tuple[list[int], Any]:
    """Write `chat_template` into the folder's tokenizer and make generation stop where the model's
    generation config says, at `eos` (the format's end of turn; None: the tokenizer's EOS) and at
    the tokenizer's EOS. Returns the generation config's EOS ids and the tokenizer as saved."""
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
        if not has_token(tokenizer, token):
            raise UnknownToken(token)
        index = tokenizer.convert_tokens_to_ids(token)
        if index not in eos_ids:
            eos_ids.append(index)
    if eos:
        tokenizer.eos_token = eos
    tokenizer.save_pretrained(folder)
    generation.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    generation.save_pretrained(folder)
    return eos_ids, tokenizer


def keep_sentencepiece_vocabulary(base: Path, merged: Path, tokenizer=None) -> list[str]:
    """What a re-saved SentencePiece tokenizer lost that llama.cpp's converter needs, put back into
    `merged`; returns what was put back. The converter reads a SentencePiece vocabulary's scores and
    types only from tokenizer.model, and which tokens are added ones (after its pieces, or HF's added
    tokens among them) only from tokenizer_config.json's added_tokens_decoder or added_tokens.json.
    transformers 5 re-saves a tokenizer without either (a PreTrainedTokenizerFast has no slow
    vocabulary file to write; added tokens live in tokenizer.json only): the converter then gives
    every token the same score (measured: 5 of 6 parity texts differ on Llama 2's vocabulary) and
    drops the added tokens (a chat format's markers become plain text). The base's tokenizer.model
    holds only if the merged tokenizer still has each of its pieces at the same id; any other change
    of vocabulary fails here instead of giving a GGUF with wrong tokens. `tokenizer`: the merged
    folder's, when the caller has just saved it there (a large vocabulary takes seconds to load)."""
    import json

    source, target = Path(base) / SENTENCEPIECE_MODEL, Path(merged) / SENTENCEPIECE_MODEL
    if not target.exists() and not source.is_file():
        return []
    kept = []
    pieces, kinds = _sentencepiece_pieces(target if target.exists() else source)
    tokenizer = tokenizer or load_tokenizer(merged)
    vocab = tokenizer.get_vocab()
    for index, piece in enumerate(pieces):
        found = vocab.get(piece)
        if found != index:
            raise StageError(
                f"the merged tokenizer's vocabulary differs from {SENTENCEPIECE_MODEL}: piece {index} {piece!r} is "
                + ("missing" if found is None else f"id {found}") + " in the merged tokenizer.json, so the GGUF "
                "would be converted with wrong tokens. Train without changing the vocabulary (new tokens only "
                "after the existing ones)")
    if not target.exists():
        target.write_bytes(source.read_bytes())
        kept.append(SENTENCEPIECE_MODEL)
    config_file = Path(merged) / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    listed = {int(index) for index in config.get("added_tokens_decoder", {})}
    if not (Path(merged) / "added_tokens.json").exists():
        # the converter types a piece from tokenizer.model alone unless the list names it: an added token
        # there as a plain piece (a GGUF's extra unknown-typed tokens, Phi-3's [PAD...]) needs its entry
        plain = {index for index, kind in enumerate(kinds) if kind in (_SPM_NORMAL, _SPM_USER_DEFINED)}
        after = {index: token for index, token in tokenizer.added_tokens_decoder.items()
                 if (index >= len(pieces) or index in plain) and index not in listed}
        if after:
            decoder = config.setdefault("added_tokens_decoder", {})
            for index, token in sorted(after.items()):
                decoder[str(index)] = {"content": token.content, "lstrip": token.lstrip, "normalized": token.normalized,
                                       "rstrip": token.rstrip, "single_word": token.single_word,
                                       "special": token.special}
            config_file.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            kept.append(f"{len(after)} added tokens in tokenizer_config.json")
    return kept


_SPM_NORMAL, _SPM_USER_DEFINED = 1, 4   # sentencepiece's ModelProto.SentencePiece.Type


def _sentencepiece_pieces(path: Path) -> tuple[list[str], list[int]]:
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as err:  # protobuf's DecodeError, whose module changes between protobuf versions
        raise StageError(f"{path} is not a SentencePiece model ({err}); remove it from the model's folder if "
                         f"its tokenizer.json is the whole tokenizer") from None
    return [piece.piece for piece in proto.pieces], [piece.type for piece in proto.pieces]


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
