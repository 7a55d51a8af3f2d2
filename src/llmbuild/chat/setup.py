"""Which chat template a build trains and deploys with, and how a system prompt enters it.

The rule: a model that ships a chat template is trained, merged, converted and served with that
template, byte for byte; its family (facts/chat_families.py) is detected from the text and gives
the Ollama TEMPLATE, the stops and the tool-call parser. `model.chat_format` names the family of a
model that ships none (llmbuild's own template of that family is used) and is checked against the
one it ships. `prompt.template` replaces the model's template with llmbuild's of that family.

`prompt.system`: None keeps the template's own behaviour (its default system prompt, or none); a
string becomes the system message of every conversation that has none, in training and in every
deployed template.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Callable

from ..errors import StageError
from ..facts.chat_families import FAMILIES, ChatFamily, builtin, detect
from .templates import hf_chat_template

OWN = "the model's own chat template"


@dataclass(frozen=True)
class ChatSetup:
    family: str | None          # None: a template of no known family (HF, GGUF and vLLM still use it)
    template: str               # the chat template written into the merged model, the GGUF and vLLM's file
    source: str                 # OWN or templates/chat/<family>.jinja
    system: str | None          # prompt.system as set (None: the template's own behaviour)

    @property
    def chat_family(self) -> ChatFamily | None:
        return FAMILIES[self.family] if self.family else None

    def stops(self, eos_token: str | None) -> list[str]:
        """Where an assistant turn ends: the family's stops, then the tokenizer's EOS."""
        family = self.chat_family.stop if self.chat_family else ()
        return list(dict.fromkeys([*family, *([eos_token] if eos_token else [])]))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ChatSetup:
        return cls(**json.loads(text))


def choose(own: str | None, chat_format: str | None, template_override: str | None, system: str | None,
           builtin_text: Callable[[str], str]) -> ChatSetup:
    """`own`: the base model's chat template (None: it ships none); `chat_format`: model.chat_format;
    `template_override`: prompt.template; `builtin_text(relative)`: a file under templates/."""
    family = family_of(own, chat_format, template_override)
    if template_override or not own:
        text = builtin_text(family.chat_template)
        return ChatSetup(family.name, hf_chat_template(text, system or "", family.chat_template),
                         f"templates/{family.chat_template}", system)
    return ChatSetup(family.name if family else None, with_system(own, system), OWN, system)


def family_of(own: str | None, chat_format: str | None, template_override: str | None,
              model_type: str | None = None) -> ChatFamily | None:
    """The family a build with these settings trains in (None: the model's own template, of no known
    family), or the StageError that says which setting to change. `model_type`: the base model's
    config.json model_type, to name the format a model that ships no template most likely has."""
    if template_override or not own:
        name = template_override or chat_format
        if not name:
            fits = [f.name for f in FAMILIES.values() if f.builtin and model_type in f.model_types]
            hint = f"; its architecture ({model_type}) is that of {FAMILIES[fits[0]].models}, whose format is " \
                   f"model.chat_format={fits[0]}" if fits else ""
            raise StageError(f"the model ships no chat template, so llmbuild cannot tell its prompt format{hint}. "
                             f"Set model.chat_format to one of {', '.join(builtin())} (or prompt.template)")
        family = FAMILIES[name]
        if not family.builtin:
            key = "prompt.template" if template_override else "model.chat_format"
            why = "" if template_override else " and the model ships no chat template"
            raise StageError(f"{key} = {name!r}: llmbuild has no template of its own for {family.models}{why}. "
                             f"Use a model folder or GGUF that includes its chat template, or one of "
                             f"{', '.join(builtin())}.")
        return family
    detected = detect(own)
    if chat_format and (detected is None or detected.name != chat_format):
        seen = f"a {detected.name} template ({detected.models})" if detected else "a template of no known family"
        raise StageError(f"model.chat_format = {chat_format!r}, but the model ships {seen}. Remove "
                         f"model.chat_format to use the model's own template, or set prompt.template={chat_format} "
                         f"to replace it with llmbuild's.")
    return detected


def with_system(template: str, system: str | None) -> str:
    """`template` as is for `system` None; else with `system` as the system message of every
    conversation that has none (the template then formats it as its own)."""
    if system is None:
        return template
    literal = json.dumps(system, ensure_ascii=False)   # a Jinja string literal; characters stay characters
    return ("{%- if not (messages and messages[0]['role'] == 'system') -%}"
            "{%- set messages = [{'role': 'system', 'content': " + literal + "}] + messages -%}"
            "{%- endif -%}\n" + template)
