"""Names made from user text: file-safe, and short enough, without two inputs sharing a name."""

from __future__ import annotations

import hashlib
import re

DIGEST_LENGTH = 8


def sanitize(text: str, allowed: str = r"\w.+-", strip: str = "-") -> str:
    """`text` with every run of characters outside `allowed` (a regex character class body)
    replaced by one "-", and `strip` trimmed from both ends."""
    return re.sub(f"[^{allowed}]+", "-", text).strip(strip)


def digest(text: str, length: int = DIGEST_LENGTH) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def shorten(name: str, limit: int, source: str | None = None, trim: str = "") -> str:
    """`name` if it fits in `limit` characters; else its start, then "-" and a digest of `source`
    (default: `name`), so that two long names never become one. `trim` is stripped from the end
    of the kept start."""
    if len(name) <= limit:
        return name
    start = name[:limit - DIGEST_LENGTH - 1].rstrip(trim)
    return f"{start}-{digest(source if source is not None else name)}"
