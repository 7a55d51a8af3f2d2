"""A GGUF's own vocabulary as an HF tokenizer that gives llama.cpp's token ids.

llama.cpp tokenizes a GGUF in one of these ways (llama-vocab.cpp), each rebuilt here from plain
`tokenizers` parts:

* SentencePiece (`tokenizer.ggml.model` "llama": Llama 2, Mistral v0.x, Phi-3, Gemma 1-3): spaces
  become '▁' (one more in front of each text between special tokens, unless add_space_prefix is
  off, as for Gemma), then the adjacent pair whose join is the highest-scoring token merges first;
  characters that end up in no token become <0xNN> byte tokens (llm_tokenizer_spm). HF's BPE does
  the same with merges ranked by those scores and byte_fallback: transformers' generate_merges,
  which its LlamaConverter uses for sentencepiece models, gives that ranking.
* byte-level BPE ("gpt2"): llama.cpp's regexes for the named pre-tokenizer (tokenizer.ggml.pre),
  each splitting the pieces of the one before, GPT-2's byte mapping, then the GGUF's merges in rank
  order (llm_tokenizer_bpe).
* Gemma 4 ("gemma4"): BPE over '▁'-escaped text split only at newlines, with <0xNN> byte fallback.

Which texts are special tokens comes from llama.cpp itself: it loads the file (vocabulary only) and
reports each token's attributes, since it corrects some types by name ('<|endoftext|>' and the like
become control tokens; whitespace after Phi-3's special tokens is stripped).

transformers' own GGUF tokenizer import (transformers 5.6, measured on llama.cpp's test texts) is not
used: it picks a converter by architecture, not by tokenizer, and loses llama.cpp's pre-tokenizers
(llama-bpe: 11 of 46 texts differ, falcon 9, deepseek-llm 1, starcoder 1; mpt and refact do not
load), Phi-3 differs on 45 of 46, and it builds SentencePiece merges in about two minutes for a
32k vocabulary (here: under a second).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..errors import StageError
from . import native
from .gguf_header import read_fields
from .hf_tokenizer import SENTENCEPIECE_MODEL

_FIX = "Import the model from its HF folder instead: set model.path to it."

# --- byte-level BPE pre-tokenizers: llama.cpp's regexes (llama-vocab.cpp, llm_tokenizer_bpe), verbatim ---
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN35 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
           r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_CJK = "[一-龥ࠀ-一가-\ud7ff]+"
# deepseek-llm's letters (the cased scripts), as llama.cpp lists them
_DEEPSEEK_LETTERS = (r"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ"
                     "-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ"
                     "-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+")

_SPLITS = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],  # a GGUF without a name
    "gpt-2": [_GPT2],
    "starcoder": [r"\p{N}", _GPT2],
    "llama-bpe": [_LLAMA3],
    "qwen2": [_QWEN2],
    "qwen35": [_QWEN35],
    "deepseek-llm": ["[\r\n]", _DEEPSEEK_LETTERS, "\\s?[!-/:-~！-／：-～‘-‟\u3000-。]+", r"\s+$", _CJK, r"\p{N}+"],
    "deepseek-coder": ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"],
    "falcon": [r"[\p{P}\$\+<=>\^~\|`]+", _GPT2, "[0-9][0-9][0-9]"],
}
# names llama.cpp gives the same regexes and options
_ALIASES = {"mpt": "gpt-2", "olmo": "gpt-2", "phi-2": "gpt-2",
            "refact": "starcoder", "command-r": "starcoder", "smollm": "starcoder", "codeshell": "starcoder",
            "exaone": "starcoder", "minerva-7b": "starcoder",
            "llama3": "llama-bpe", "llama-v3": "llama-bpe", "falcon3": "llama-bpe", "pixtral": "llama-bpe",
            "deepseek-r1-qwen": "qwen2", "stablelm2": "qwen2", "megrez": "qwen2"}
_IGNORE_MERGES = {"llama-bpe"}   # a pre-token that is itself a token is kept whole (llama.cpp's ignore_merges)


@dataclass(frozen=True)
class GgufTokenizer:
    model: str                  # tokenizer.ggml.model: "llama" (SentencePiece), "gpt2" (byte-level BPE), "gemma4"
    pre: str                    # tokenizer.ggml.pre: llama.cpp's pre-tokenizer name
    tokens: list[str]
    types: list[int]            # gguf-py's TokenType numbers (llama.cpp's), as the GGUF stores them
    attrs: list[int]            # llama.cpp token attributes, as llama.cpp resolves them on load
    scores: list[float]
    merges: list[str]
    special: dict[str, int]     # bos/eos/unk/pad/mask -> id
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool      # SentencePiece: '▁' before each text between special tokens
    chat_template: str | None


def read_vocab(gguf_path: Path) -> GgufTokenizer:
    from gguf.constants import TokenType

    try:
        fields = read_fields(gguf_path, lambda key: key.startswith("tokenizer."))
    except (ValueError, OSError) as err:
        raise StageError(f"{gguf_path.name} cannot be read as a GGUF ({err}); the file is damaged or incomplete: "
                         f"download it again") from None
    tokens = [token or f"[EMPTY_{i}]" for i, token in enumerate(fields.get("tokenizer.ggml.tokens", []))]
    model = fields.get("tokenizer.ggml.model", "")
    # in a forked copy of this process (native.py): a vocabulary llama.cpp chokes on is an error, not the end
    attrs, special, add_bos, add_eos = native.run_contained(partial(_llama_cpp_view, gguf_path, len(tokens)),
                                                            what=f"reading the vocabulary of {gguf_path.name}")
    unk = fields.get("tokenizer.ggml.unknown_token_id", 0 if model == "llama" else None)   # llama.cpp's default
    if unk is not None and unk < len(tokens):
        special["unk"] = int(unk)
    return GgufTokenizer(
        model=model,
        pre="gemma4" if model == "gemma4" else fields.get("tokenizer.ggml.pre", "default"),
        tokens=tokens,
        types=[int(t) for t in fields.get("tokenizer.ggml.token_type", [TokenType.NORMAL] * len(tokens))],
        attrs=attrs,
        scores=[float(s) for s in fields.get("tokenizer.ggml.scores", [0.0] * len(tokens))],
        merges=list(fields.get("tokenizer.ggml.merges", [])),
        special=special,
        add_bos=add_bos,
        add_eos=add_eos,
        add_space_prefix=bool(fields.get("tokenizer.ggml.add_space_prefix", model == "llama")),
        chat_template=fields.get("tokenizer.chat_template"),
    )


def build_tokenizer(vocab: GgufTokenizer):
    """A PreTrainedTokenizerFast that tokenizes exactly like llama.cpp does with this GGUF."""
    import llama_cpp
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    ids = {token: index for index, token in enumerate(vocab.tokens)}
    if vocab.model == "llama":
        from transformers.convert_slow_tokenizer import generate_merges

        unk = vocab.tokens[vocab.special["unk"]] if "unk" in vocab.special else None
        merges = generate_merges(ids, list(zip(vocab.tokens, vocab.scores, strict=True)))
        tokenizer = Tokenizer(models.BPE(vocab=ids, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
        escape = [normalizers.Prepend("▁")] if vocab.add_space_prefix else []
        tokenizer.normalizer = normalizers.Sequence([*escape, normalizers.Replace(" ", "▁")])
        strip = [decoders.Strip(" ", 1, 0)] if vocab.add_space_prefix else []
        tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                               *strip])
    elif vocab.model == "gemma4":
        tokenizer = Tokenizer(models.BPE(vocab=ids, merges=_split_merges(vocab.merges), fuse_unk=False,
                                         byte_fallback=True))
        tokenizer.normalizer = normalizers.Replace(" ", "▁")
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("[^\\n]+|[\\n]+"), "isolated")
        # a run of newlines that is a token stays whole, without merges (llama.cpp's Gemma 4 rule)
        tokenizer.add_tokens([AddedToken(token, normalized=False) for token in vocab.tokens
                              if token.strip("\n") == "" and token])
        tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    elif vocab.model == "gpt2":
        name = _ALIASES.get(vocab.pre, vocab.pre)
        if name not in _SPLITS:
            supported = ", ".join(sorted({*_SPLITS, *_ALIASES}))
            raise StageError(f"the GGUF's pre-tokenizer '{vocab.pre}' cannot be rebuilt as an HF tokenizer yet "
                             f"(supported: {supported}). {_FIX}")
        tokenizer = Tokenizer(models.BPE(vocab=ids, merges=_split_merges(vocab.merges), fuse_unk=False,
                                         byte_fallback=False, ignore_merges=name in _IGNORE_MERGES))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(regex), "isolated") for regex in _SPLITS[name]]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
        tokenizer.decoder = decoders.ByteLevel()
    else:
        kind = {"bert": "WordPiece", "t5": "Unigram", "rwkv": "RWKV", "plamo2": "PLaMo-2"}.get(vocab.model, "unknown")
        raise StageError(f"the GGUF's tokenizer is '{vocab.model}' ({kind}); only SentencePiece ('llama'), "
                         f"byte-level BPE ('gpt2') and Gemma 4 ('gemma4') tokenizers can be rebuilt. {_FIX}")
    # llama.cpp parses control, user-defined and unknown tokens out of the raw text before tokenizing the
    # rest. Byte-level BPE has no normalizer, so there 'normalized' changes nothing but what llama.cpp's
    # converter does: it decodes a non-normalized token's encoding, which garbles user-defined tokens
    # such as DeepSeek-Coder's 'õ' (a byte-level character)
    control = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
    parsed = control | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    added = []
    for token, attr in zip(vocab.tokens, vocab.attrs, strict=True):
        if attr & parsed:
            special = bool(attr & control)
            added.append(AddedToken(token, special=special, normalized=vocab.model == "gpt2" and not special,
                                    lstrip=bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP),
                                    rstrip=bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP)))
    tokenizer.add_tokens(added)
    named = {f"{role}_token": vocab.tokens[index] for role, index in vocab.special.items()}
    # every control token is a named special token too: llama.cpp's converter (Gemma 4's) types a token
    # CONTROL only if it is among the tokenizer's special tokens
    extra = [token.content for token in added if token.special and token.content not in named.values()]
    hf = PreTrainedTokenizerFast(tokenizer_object=tokenizer, clean_up_tokenization_spaces=False,
                                 extra_special_tokens=extra, **named)
    hf.add_bos_token = vocab.add_bos
    hf.add_eos_token = vocab.add_eos
    if vocab.chat_template:
        hf.chat_template = vocab.chat_template
    return hf


def save_tokenizer(vocab: GgufTokenizer, tokenizer, folder: Path) -> None:
    """The HF tokenizer files, and for SentencePiece also tokenizer.model: llama.cpp's converter reads a
    SentencePiece vocabulary's scores and types only from that file (Phi-3's and Gemma's converters
    need it; Llama's falls back to tokenizer.json but gives every token the same score, and llama.cpp
    then merges differently)."""
    tokenizer.save_pretrained(folder)
    if vocab.model == "llama":
        (folder / SENTENCEPIECE_MODEL).write_bytes(sentencepiece_model(vocab))


def sentencepiece_model(vocab: GgufTokenizer) -> bytes:
    """A sentencepiece ModelProto (BPE) with the GGUF's pieces, scores and types (sentencepiece's piece
    types use llama.cpp's token type numbers)."""
    from gguf.constants import TokenType
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    unk = vocab.special.get("unk", -1)
    known = set(pb.ModelProto.SentencePiece.Type.values())
    for index, (token, score, kind) in enumerate(zip(vocab.tokens, vocab.scores, vocab.types, strict=True)):
        if kind not in known:
            kind = TokenType.NORMAL
        if kind == TokenType.UNKNOWN and index != unk:   # sentencepiece allows one unknown piece; the converter
            kind = TokenType.USER_DEFINED                # reads the others' types from the HF files, as added tokens
        proto.pieces.add(piece=token, score=score, type=int(kind))
    spec = proto.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = len(vocab.tokens)
    spec.byte_fallback = TokenType.BYTE in vocab.types
    spec.unk_id, spec.bos_id = unk, vocab.special.get("bos", -1)
    spec.eos_id, spec.pad_id = vocab.special.get("eos", -1), vocab.special.get("pad", -1)
    normalizer = proto.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = vocab.add_space_prefix
    normalizer.remove_extra_whitespaces = False
    normalizer.escape_whitespaces = True
    return proto.SerializeToString()


def _split_merges(merges: list[str]) -> list[tuple[str, str]]:
    # as llama.cpp reads them: the first space after the first character separates the two parts
    # (a merge without one can never apply in llama.cpp)
    cuts = ((merge, merge.find(" ", 1)) for merge in merges)
    return [(merge[:cut], merge[cut + 1:]) for merge, cut in cuts if cut > 0]


def _llama_cpp_view(path: Path, n_tokens: int) -> tuple[list[int], dict[str, int], bool, bool]:
    """What llama.cpp makes of the vocabulary when it loads the file: each token's attributes, the bos,
    eos, pad and mask ids and whether BOS/EOS are added (its defaults apply where the GGUF is silent)."""
    import llama_cpp

    try:
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as err:
        raise StageError(f"llama.cpp cannot load the vocabulary of {path.name} ({err}). {_FIX}") from None
    try:
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        attrs = [int(llama_cpp.llama_vocab_get_attr(vocab, i)) for i in range(n_tokens)]
        ids = {"bos": llama_cpp.llama_vocab_bos(vocab), "eos": llama_cpp.llama_vocab_eos(vocab),
               "pad": llama_cpp.llama_vocab_pad(vocab), "mask": llama_cpp.llama_vocab_mask(vocab)}
        special = {role: int(index) for role, index in ids.items() if 0 <= index < n_tokens}
        return (attrs, special, bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
                bool(llama_cpp.llama_vocab_get_add_eos(vocab)))
    finally:
        llm.close()
