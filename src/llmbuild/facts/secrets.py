"""Credentials in configuration values: which keys name one, and the masked copy that files and
terminals may show."""

from __future__ import annotations

import re
from typing import Any

# a key that names a credential (hub_token, api_key, password), not a count of tokens (max_tokens)
SECRET = re.compile(r"(^|[_.-])(token|secret(_key)?|password|passwd|api_?key|access_key|credentials?)$", re.I)
MASK = "***"


def redact(value: Any, key: str = "") -> Any:
    """`value` with every value whose key looks like a credential replaced by '***'."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    return MASK if SECRET.search(key) and value not in (None, "") else value
