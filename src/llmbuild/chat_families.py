"""Chat template families: how each one is called by LLaMA-Factory and where generation stops.

The prompt text itself lives in templates/chat/<family>.jinja (HF, GGUF) and
templates/ollama/<family>.gotmpl (Ollama); this module holds the facts around it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatFamily:
    name: str
    llamafactory_template: str   # LLaMA-Factory's built-in template with the same text
    stop: tuple[str, ...]        # strings that end an assistant turn; the tokenizer's EOS is added too
    eos: str | None              # token the assistant turn ends with (generation_config eos); None: the tokenizer's
    tools: bool = False          # the format defines tool definitions, calls and results


FAMILIES = {f.name: f for f in (
    ChatFamily("chatml", "chatml", ("<|im_end|>",), "<|im_end|>"),
    ChatFamily("qwen", "qwen", ("<|im_end|>", "<|endoftext|>"), "<|im_end|>", tools=True),
    ChatFamily("llama3", "llama3", ("<|eot_id|>",), "<|eot_id|>"),
    ChatFamily("alpaca", "alpaca", (), None),
)}
