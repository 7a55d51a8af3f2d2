"""File names inside artifacts, following the GGUF naming convention
(<BaseName>-<SizeLabel>-<FineTune>-<Encoding>.gguf: the model name carries the first three)."""

from __future__ import annotations

import re


def gguf_file(model_name: str, encoding: str) -> str:
    safe = re.sub(r"[^\w.+-]+", "-", model_name).strip("-")
    return f"{safe}-{encoding.upper()}.gguf"
