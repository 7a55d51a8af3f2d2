"""The part of doit's private API that llmbuild uses, in one place. Pinned by pyproject.toml
(doit==0.37.0) and exercised by tests/test_private_apis.py.

doit turns every `key=value` argument into a command-line variable before any command runs
(`doit.get_var` reads them one at a time); Hydra needs all of them, in command-line order, and doit
keeps them only in a module-level dict.
"""

from __future__ import annotations

from doit import doit_cmd

DOIT_VERSION = "0.37.0"   # the version this is tested with


def verbosity_given(params) -> int | None:
    """The `-v/--verbosity` value given on the command line; None when it comes from a config
    (doit's own commands tell the two apart the same way)."""
    return params["verbosity"] if "verbosity" in params._non_default_keys else None


def command_line_variables() -> dict[str, str]:
    """Every `key=value` argument of this doit invocation, in order."""
    return dict(doit_cmd._CMDLINE_VARS or {})
