"""Ollama Modelfile text: quoting that Ollama reads back exactly, and the file itself from
templates/Modelfile.j2.

Ollama's parser (parser/parser.go) has no escape sequences. A value ends at the first line end
where the text so far, trimmed, is a complete bare, "..." or \"\"\"...\"\"\" value. So a value is
written bare when it is one line without edge spaces, else in the first quoting that Ollama's rule
reads back unchanged; text that no quoting can hold is an error, never a broken file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..facts.layout import MODELFILE_TEMPLATE
from ..files.templates import TemplateDir

# Ollama's Modelfile reference: PARAMETER names and their value types
PARAMETER_TYPES = {
    "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int, "num_thread": int, "num_keep": int,
    "seed": int, "num_predict": int, "top_k": int, "repeat_last_n": int,
    "top_p": float, "min_p": float, "typical_p": float, "temperature": float, "repeat_penalty": float,
    "presence_penalty": float, "frequency_penalty": float,
    "use_mmap": bool,
    "stop": str,
}
MESSAGE_ROLES = ("system", "user", "assistant")


class ModelfileError(ValueError):
    """Text that an Ollama Modelfile cannot hold, or a parameter Ollama does not know."""


def _unquote(text: str) -> tuple[str, bool]:
    if text.startswith('"""'):
        return (text[3:-3], True) if len(text) >= 6 and text.endswith('"""') else ("", False)
    if text.startswith('"'):
        return (text[1:-1], True) if len(text) >= 2 and text.endswith('"') else ("", False)
    return text, True


def read_back(written: str) -> str | None:
    """What Ollama's parser reads from `written` followed by a newline; None if the value would
    end before the end of `written` (the rest would then be parsed as new commands)."""
    buffer: list[str] = []
    text = written + "\n"
    for index, char in enumerate(text):
        if char in " \t\r\n":
            value, ok = _unquote("".join(buffer).strip())
            if not ok or char in " \t":
                buffer.append(char)
                continue
            return value if index == len(text) - 1 else None
        if char.isprintable():
            buffer.append(char)
    return None


def quote(text: str, what: str) -> str:
    """`text` written so that Ollama reads back exactly `text`."""
    candidates = [text] if text and "\n" not in text and "\r" not in text and text == text.strip() else []
    candidates += ['"""' + text + '"""', '"' + text + '"']
    for written in candidates:
        if read_back(written) == text:
            return written
    raise ModelfileError(f"{what} cannot be written into an Ollama Modelfile: Modelfile values have no escape "
                         f"sequences, and this text contains quotes that would end it early ({text[:60]!r}). "
                         f"Rephrase it without a quote directly before a space or line end.")


def parameter_value(name: str, value: Any) -> str:
    kind = PARAMETER_TYPES.get(name)
    if kind is None:
        raise ModelfileError(f"'{name}' is not an Ollama PARAMETER; valid: {', '.join(PARAMETER_TYPES)}")
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(int(value))
    if kind is float:
        return repr(float(value))
    return quote(str(value), f"PARAMETER {name}")


@dataclass
class Modelfile:
    gguf_file: str
    template: str
    header: list[str]
    system: str = ""
    parameters: list[tuple[str, Any]] = field(default_factory=list)   # repeated names allowed (stop)
    messages: list[tuple[str, str]] = field(default_factory=list)     # few-shot turns
    license: str | None = None
    adapter: str | None = None


def render(modelfile: Modelfile, templates: TemplateDir) -> str:
    for role, _ in modelfile.messages:
        if role not in MESSAGE_ROLES:
            raise ModelfileError(f"MESSAGE role {role!r}: Ollama accepts {', '.join(MESSAGE_ROLES)}")
    return templates.render(MODELFILE_TEMPLATE,
        header=modelfile.header,
        source=quote("./" + modelfile.gguf_file, "the GGUF file name"),
        adapter=quote("./" + modelfile.adapter, "the adapter file name") if modelfile.adapter else None,
        template=quote(modelfile.template, "the TEMPLATE"),
        system=quote(modelfile.system, "prompt.system") if modelfile.system else None,
        parameters=[(name, parameter_value(name, value)) for name, value in modelfile.parameters],
        messages=[(role, quote(content, f"a MESSAGE {role} turn")) for role, content in modelfile.messages],
        license=quote(modelfile.license, "the LICENSE") if modelfile.license else None,
    )
