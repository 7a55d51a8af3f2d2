"""Render files from templates/ with a sandboxed Jinja environment (autoescape only for *.html.j2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import StageError


def environment(root: Path) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(loader=jinja2.FileSystemLoader(Path(root) / "templates"), trim_blocks=True,
                                         lstrip_blocks=True, keep_trailing_newline=True,
                                         undefined=jinja2.StrictUndefined,
                                         autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                                                             default_for_string=False))


def render_file(root: Path, name: str, **values: Any) -> str:
    try:
        return environment(root).get_template(name).render(**values)
    except jinja2.TemplateError as err:
        line = f" line {err.lineno}" if getattr(err, "lineno", None) else ""
        raise StageError(f"templates/{name}{line}: {err}. Fix the template.") from None
