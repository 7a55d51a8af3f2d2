"""Chat families under test: the publishers' own chat templates of each family (llama.cpp's copies,
unpacked into llmbuild/_llama_cpp/models/templates at install), the special tokens of their
models, and look-alike formats that belong to no family."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmbuild import PACKAGE_DIR
from llmbuild.facts.chat_families import TEMPLATE_DATE

OFFICIAL = PACKAGE_DIR / "_llama_cpp" / "models" / "templates"
OURS = Path(__file__).parent / "templates"   # publishers' templates llama.cpp's folder lacks (README.md there)
REJECTS = object()     # default_system of a template that refuses system messages


@dataclass(frozen=True)
class Official:
    family: str
    file: str                        # under OFFICIAL, without .jinja
    bos: str | None
    eos: str                         # the tokenizer's EOS
    system: Any                      # what default_system reads off it (REJECTS: it refuses the probe)
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.family}:{self.file}"


def mistral_small_system(name: str) -> str:
    """The default system prompt as the template's own text spells it (a Jinja string literal around
    `today`), on the day llmbuild renders templates with."""
    path = OFFICIAL / f"{name}.jinja"
    if not path.is_file():
        return ""   # official_text skips the test that reads it
    found = re.search(r'default_system_message = "(.*?)" \+ today \+ "(.*?)" %\}', path.read_text("utf-8"), re.S)
    before, after = (part.encode().decode("unicode_escape") for part in found.groups())
    return before + TEMPLATE_DATE.strftime("%Y-%m-%d") + after


LLAMA = dict(bos="<|begin_of_text|>", eos="<|eot_id|>", system="")
R1 = dict(bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", system="")
OFFICIALS = (
    Official("qwen", "Qwen-Qwen2.5-7B-Instruct", None, "<|im_end|>",
             "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
    Official("qwen3", "Qwen-Qwen3-0.6B", None, "<|im_end|>", None),
    Official("qwq", "Qwen-QwQ-32B", None, "<|im_end|>", None),
    Official("llama3.1", "meta-llama-Llama-3.1-8B-Instruct", **LLAMA),
    Official("llama3.1", "meta-llama-Llama-3.2-3B-Instruct", **LLAMA),
    Official("llama3.1", "meta-llama-Llama-3.3-70B-Instruct", **LLAMA),
    Official("gemma", "google-gemma-2-2b-it", "<bos>", "<eos>", REJECTS),
    Official("phi3", "microsoft-Phi-3.5-mini-instruct", "<s>", "<|endoftext|>", None),
    Official("mistral", "mistralai-Mistral-Nemo-Instruct-2407", "<s>", "</s>", None),
    # llama.cpp's copy of the Qwen distill closes <think> unless enable_thinking; the Llama distill
    # always leaves it open, as does the TEMPLATE unless a request sets think=false
    Official("deepseek-r1", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", **R1, kwargs={"enable_thinking": True}),
    Official("deepseek-r1", "deepseek-ai-DeepSeek-R1-Distill-Llama-8B", **R1),
    Official("glm4", "GLM-4.6", None, "<|endoftext|>", None),
    Official("phi4", "microsoft-phi-4", None, "<|im_end|>", None),
    Official("deepseek-v3", "deepseek-ai-DeepSeek-V3.1", **R1),
    Official("mistral-small", "Mistral-Small-3.2-24B-Instruct-2506", "<s>", "</s>",
             mistral_small_system("Mistral-Small-3.2-24B-Instruct-2506")),
)
# templates of other formats that a family's markers could take for theirs
NOT_OURS = ("HuggingFaceTB-SmolLM3-3B", "mistralai-Ministral-3-14B-Reasoning-2512")
# llmbuild's own templates: the special tokens of the models they are used for
BUILTIN_TOKENS = {"chatml": (None, "<|im_end|>"), "qwen": (None, "<|im_end|>"),
                  "llama3": ("<|begin_of_text|>", "<|eot_id|>"), "gemma": ("<bos>", "<eos>"), "alpaca": ("<s>", "</s>")}



def official_text(name: str) -> str:
    path = OFFICIAL / f"{name}.jinja"
    if not path.is_file() and (OURS / f"{name}.jinja").is_file():
        path = OURS / f"{name}.jinja"
    if not path.is_file():
        pytest.skip(f"{path} is missing: llama.cpp's templates are unpacked at install; run `pip install -e .`")
    return path.read_text(encoding="utf-8")
