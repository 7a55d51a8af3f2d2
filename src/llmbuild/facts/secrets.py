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
    if sep and value and (is_secret(key.lstrip("+~")) or _USERINFO.search(value)):
        return f"{key}{sep}{MASK}"
    return item


# a URL that carries a user name or password: scheme://user:password@host
_USERINFO = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@]*@", re.I)


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


# storage options (fsspec's, for cache.url) that are credentials: they belong in the environment
# (AWS_ACCESS_KEY_ID, ~/.aws, ...), never in a config
CREDENTIAL_OPTIONS = ("key", "secret", "token", "password", "username", "access_key", "secret_key",
                      "session_token", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                      "account_key", "sas_token", "client_secret")


def credential_in_url(url: str, options: dict[str, Any]) -> str | None:
    """What credential a remote URL or its options carry ("a user name or password in the URL",
    "options key, secret"), or None."""
    from urllib.parse import urlsplit

    if "@" in urlsplit(url).netloc:
        return "a user name or password in the URL"
    given = sorted(str(name) for name in options if str(name).lower() in CREDENTIAL_OPTIONS or is_secret(str(name)))
    return f"options {', '.join(given)}" if given else None
