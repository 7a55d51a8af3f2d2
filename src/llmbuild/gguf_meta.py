"""Read the few GGUF metadata fields llmbuild checks, through gguf's GGUFReader."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_fields(path: Path, names: tuple[str, ...]) -> dict[str, Any]:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    return {name: (reader.fields[name].contents() if name in reader.fields else None) for name in names}


def token_text(path: Path, *id_fields: str) -> list[str]:
    """The token strings behind id fields such as tokenizer.ggml.eos_token_id."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    tokens = reader.fields["tokenizer.ggml.tokens"]
    out = []
    for name in id_fields:
        if name in reader.fields:
            index = int(reader.fields[name].contents())
            out.append(str(bytes(tokens.parts[tokens.data[index]]), "utf-8"))
    return out
