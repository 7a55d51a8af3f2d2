"""A GGUF as llama.cpp itself loads it (vocabulary only): its metadata in llama.cpp's string form,
its end and BOS tokens as llama.cpp resolves them, and llama.cpp's token ids.

Each read loads the GGUF in a forked copy of this process (native.py), where a crash of llama.cpp
is an error rather than the end of the build. The stages that check a built GGUF ask llama.cpp
rather than read the header (gguf_header.py):
llama.cpp is what every consumer of the file (llama.cpp, Ollama) runs, its defaults fill in what the
file leaves out (whether a BOS is added, which token ends a turn), and one load gives the metadata
and the token ids.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import ToolError
from . import native


@dataclass(frozen=True)
class GgufMetadata:
    values: dict[str, str]      # string form of every scalar key (arrays are left out)
    end_tokens: tuple[str, ...]  # texts of the EOS and EOT tokens, as llama.cpp resolves them
    bos_token: str
    adds_bos: bool = False       # whether llama.cpp adds the BOS when tokenizing (the file's flag, else its default)

    def get(self, key: str) -> str | None:
        return self.values.get(key)


class LlamaVocab:
    """A GGUF loaded by llama.cpp without weights: its metadata and its tokenizer."""

    def __init__(self, llm):
        self._llm = llm

    def metadata(self) -> GgufMetadata:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self._llm._model.model)

        def text(token: int) -> str:
            return llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8", "replace") if token >= 0 else ""

        ends = [text(i) for i in (llama_cpp.llama_vocab_eos(vocab), llama_cpp.llama_vocab_eot(vocab)) if i >= 0]
        bos = text(llama_cpp.llama_vocab_bos(vocab))
        return GgufMetadata(dict(self._llm.metadata), tuple(dict.fromkeys(ends)), bos,
                            bool(llama_cpp.llama_vocab_get_add_bos(vocab)))

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """llama.cpp's token ids for each text (special tokens parsed, no BOS added)."""
        return [self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) for text in texts]


@contextmanager
def open_vocab(path: Path) -> Iterator[LlamaVocab]:
    import llama_cpp

    try:
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as err:
        raise ToolError(f"llama.cpp cannot read {path.name}: {err}") from None
    try:
        yield LlamaVocab(llm)
    finally:
        llm.close()


def read_metadata(path: Path) -> GgufMetadata:
    """The GGUF's metadata as llama.cpp loads it (in a copy of this process: adapters/native.py)."""
    return metadata_and_token_ids(path, [])[0]


def token_ids(path: Path, texts: list[str]) -> list[list[int]]:
    """llama.cpp's token ids for each text (in a copy of this process: adapters/native.py)."""
    return metadata_and_token_ids(path, texts)[1]


def metadata_and_token_ids(path: Path, texts: list[str]) -> tuple[GgufMetadata, list[list[int]]]:
    """One load of the GGUF's vocabulary by llama.cpp, in a forked copy of this process: a crash of the
    library there (its tokenizer throws on a vocabulary of the wrong kind) is a ToolError."""
    def load() -> tuple[GgufMetadata, list[list[int]]]:
        with open_vocab(path) as vocab:
            return vocab.metadata(), vocab.token_ids(texts)

    return native.run_contained(load, what=f"reading the vocabulary of {path.name}")
