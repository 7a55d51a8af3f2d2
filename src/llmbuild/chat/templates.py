"""One chat-template source per family, rendered for each consumer.

templates/chat/<family>.jinja is llmbuild's own HF/GGUF chat template of a builtin family (for a
model that ships none, or prompt.template); llmbuild only binds `default_system` (prompt.system)
in front of it. A model's own template is used as it is (chat/setup.py). templates/ollama/<family>.gotmpl is a Go
text/template for Ollama, pre-filled through Jinja with `[[ ... ]]` delimiters (Go owns `{{ }}`).
Both take the template's source text and its name (for messages).
"""

from __future__ import annotations

import json

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import StageError


def _jinja_string(text: str) -> str:
    # JSON's escapes (\" \\ \n) are valid in Jinja string literals. Characters stay characters: a
    # \uXXXX escape of a character outside the Basic Multilingual Plane is a surrogate pair, which
    # Jinja would render as two lone surrogates that no UTF-8 file can hold.
    return json.dumps(text, ensure_ascii=False)


def hf_chat_template(source: str, default_system: str, name: str) -> str:
    """The chat template written into the merged model and the GGUF: `source` with
    `default_system` bound in front."""
    template = "{%- set default_system = " + _jinja_string(default_system) + " -%}\n" + source
    try:
        ImmutableSandboxedEnvironment().parse(template)
    except jinja2.TemplateSyntaxError as err:
        raise StageError(f"templates/{name} line {err.lineno - 1}: {err.message}. Fix the template.") from None
    return template


def ollama_template(source: str, eos_token: str, name: str) -> str:
    """The Modelfile's TEMPLATE: `source` with the model's end token filled in."""
    env = ImmutableSandboxedEnvironment(variable_start_string="[[", variable_end_string="]]",
                                        block_start_string="[%", block_end_string="%]",
                                        comment_start_string="[#", comment_end_string="#]",
                                        keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    try:
        return env.from_string(source).render(eos_token=eos_token)
    except jinja2.TemplateError as err:
        raise StageError(f"templates/{name}: {err}. Fix the template.") from None
