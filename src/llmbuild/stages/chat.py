"""The chat setup of a build (chat/setup.py) as stages find it: train and merge choose it from the
base model and the config; merge records it in its artifact, and every later stage reads that
record, so all of them deploy exactly what was trained."""

from __future__ import annotations

from pathlib import Path

from ..adapters import hf_tokenizer
from ..chat.setup import ChatSetup, choose
from ..facts import layout
from ..files.templates import TemplateDir

RECORD = layout.CHAT_SETUP


def choose_for(cfg, templates: TemplateDir, base_tokenizer) -> ChatSetup:
    """`cfg`: a stage view holding model.chat_format, prompt.template and prompt.system;
    `base_tokenizer`: the base model's tokenizer (hf_tokenizer.load_tokenizer)."""
    return choose(hf_tokenizer.own_chat_template(base_tokenizer), cfg.model.chat_format, cfg.prompt.template,
                  cfg.prompt.system, templates.text)


def recorded(merge_artifact: Path) -> ChatSetup:
    """The setup the merge stage trained and wrote the merged model with."""
    return ChatSetup.from_json((Path(merge_artifact) / RECORD).read_text(encoding="utf-8"))
