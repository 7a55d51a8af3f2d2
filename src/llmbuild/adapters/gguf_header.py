"""A GGUF's header as gguf-py reads it: scalar metadata and tensor shapes, no weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError


def read_gguf_header(path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The scalar metadata (arrays such as the vocabulary are left out) and every tensor's dims, in
    GGUF order (innermost first), as gguf-py reads them. gguf-py builds an object per token, about
    5 s for a 49k vocabulary (sizing reads a built base model's config.json first)."""
    from gguf import GGUFReader, GGUFValueType

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read it as a GGUF file ({err})") from None
    metadata = {name: field.contents() for name, field in reader.fields.items()
                if field.types and field.types[0] != GGUFValueType.ARRAY}
    tensors = {tensor.name: tuple(int(d) for d in tensor.shape) for tensor in reader.tensors}
    return metadata, tensors
