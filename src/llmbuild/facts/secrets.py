"""Credentials in configuration values: which keys name one, and the masked copy that files and
terminals may show."""

from __future__ import annotations

import re
from typing import Any

# a key that names a credential (hub_token, api_key, password), not a count of tokens (max_tokens)
SECRET = re.compile(r"(^|[_.-])(token|secret(_key)?|password|passwd|api_?key|access_key|credentials?)$", re.I)
MASK = "***"


def is_secret(dotted_key: str) -> bool:
    """Whether a config key (`train.extra.hf_hub_token`) names a credential."""
    return bool(SECRET.search(dotted_key.rsplit(".", 1)[-1]))


def redact_override(item: str) -> str:
    """A command-line override as it may be shown: `+train.extra.hf_hub_token=***`."""
    key, sep, value = item.partition("=")
    return f"{key}{sep}{MASK}" if sep and is_secret(key.lstrip("+~")) and value else item


# Credentials LLaMA-Factory takes as arguments (train.extra), and the environment variable its
# libraries read instead: llmbuild hands them to the tool that way, so that no artifact, name or
# key holds one. huggingface_hub reads HF_TOKEN; the ModelScope SDK reads MODELSCOPE_API_TOKEN.
TOOL_CREDENTIALS = {"hf_hub_token": "HF_TOKEN", "ms_hub_token": "MODELSCOPE_API_TOKEN"}


def redact(value: Any, key: str = "") -> Any:
    """`value` with every value whose key looks like a credential replaced by '***'."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    return MASK if SECRET.search(key) and value not in (None, "") else value
