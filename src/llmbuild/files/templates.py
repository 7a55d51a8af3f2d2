"""The project's templates/ folder, rendered with a sandboxed Jinja environment (autoescape only for
*.html.j2).

A `TemplateDir` may be limited to the files a stage declares: its key hashes exactly those files,
so reading any other template (directly, or through a Jinja include) is an error, not a silent
dependency that the key does not cover.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import StageError
from ..facts import layout

FOLDER = layout.TEMPLATES_DIR


class UndeclaredTemplate(StageError):
    """A stage read a template file that its key does not cover (a bug in the stage's spec)."""


class TemplateDir:
    def __init__(self, root: Path, allowed: Iterable[str] | None = None):
        """`root`: the project root. `allowed`: file names relative to templates/ that may be read;
        None: any."""
        self.folder = Path(root) / FOLDER
        self.allowed = None if allowed is None else frozenset(allowed)

    def path(self, name: str) -> Path:
        if self.allowed is not None and name not in self.allowed:
            raise UndeclaredTemplate(
                f"templates/{name} is read but not declared by the stage (declared: "
                f"{', '.join(sorted(self.allowed)) or 'none'}): add it to the stage's `templates` in "
                f"plan/stages.py, so that its content is part of the stage's key")
        return self.folder / name

    def text(self, name: str) -> str:
        return self.path(name).read_text(encoding="utf-8")

    def environment(self) -> ImmutableSandboxedEnvironment:
        def source(name: str) -> str | None:
            try:
                return self.text(name)
            except FileNotFoundError:
                return None  # Jinja's TemplateNotFound

        loader = jinja2.FunctionLoader(source)
        return ImmutableSandboxedEnvironment(
            loader=loader, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False))

    def render(self, name: str, **values: Any) -> str:
        try:
            return self.environment().get_template(name).render(**values)
        except jinja2.TemplateError as err:
            line = f" line {err.lineno}" if getattr(err, "lineno", None) else ""
            raise StageError(f"templates/{name}{line}: {err}. Fix the template.") from None
