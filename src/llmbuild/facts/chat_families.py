"""Chat template families: the one registry of what a family is.

A family is a prompt format: its text lives in templates/chat/<family>.jinja (the HF/GGUF chat
template) and templates/ollama/<family>.gotmpl (the Ollama TEMPLATE); this registry holds the facts
around it: LLaMA-Factory's template of the same text, where generation stops, whether the format
has tools, and which vLLM tool-call parser reads its calls. Configuration is validated against
this registry, and a test checks that every family has both template files and that no template
file lacks a family.
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
    vllm_tool_parser: str | None = None  # vLLM's --tool-call-parser for its calls (vLLM docs, "Tool Calling")

    @property
    def chat_template(self) -> str:
        """The HF/GGUF chat template, relative to templates/."""
        return f"chat/{self.name}.jinja"

    @property
    def ollama_template(self) -> str:
        """The Ollama TEMPLATE (Go text/template, pre-filled through Jinja), relative to templates/."""
        return f"ollama/{self.name}.gotmpl"


FAMILIES = {f.name: f for f in (
    ChatFamily("chatml", "chatml", ("<|im_end|>",), "<|im_end|>"),
    ChatFamily("qwen", "qwen", ("<|im_end|>", "<|endoftext|>"), "<|im_end|>", tools=True, vllm_tool_parser="hermes"),
    ChatFamily("llama3", "llama3", ("<|eot_id|>",), "<|eot_id|>", vllm_tool_parser="llama3_json"),
    ChatFamily("alpaca", "alpaca", (), None),
)}

# the file patterns of a family under templates/, "{family}" filled in (stage specs use them)
CHAT_TEMPLATE_FILE = "chat/{family}.jinja"
OLLAMA_TEMPLATE_FILE = "ollama/{family}.gotmpl"
