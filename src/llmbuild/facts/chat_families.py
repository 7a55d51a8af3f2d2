"""Chat template families: the one registry of what a family is.

A family is a prompt format. A model that ships its own chat template (an instruct model's
tokenizer_config.json, chat_template.jinja, or a GGUF's tokenizer.chat_template) is trained, merged
and served with that template, byte for byte; the family, detected from the template's text
(`detect`), supplies what the template alone does not say: the Ollama TEMPLATE that renders the
same prompts (templates/ollama/<family>.gotmpl), where generation stops, whether the format has
tools and reasoning turns, and which vLLM tool-call parser reads its calls. Families marked
`builtin` also have llmbuild's own template (templates/chat/<family>.jinja) for a model that ships
none, or for `prompt.template`. Configuration is validated against this registry, and tests check
that every family has the files it needs and renders like its publisher's template.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class ChatFamily:
    name: str
    models: str                  # which models use it, for people (messages, README)
    markers: tuple[str, ...]     # texts every template of the family contains (detection)
    stop: tuple[str, ...]        # strings that end an assistant turn; the tokenizer's EOS is added too
    eos: str | None              # token the assistant turn ends with (generation_config eos); None: the tokenizer's
    tools: bool = False          # the format defines tool definitions, calls and results
    reasoning: bool = False      # assistant turns may start with <think>...</think>, dropped from earlier turns
    vllm_tool_parser: str | None = None  # vLLM's --tool-call-parser for its calls (vLLM docs, "Tool Calling")
    builtin: bool = False        # llmbuild has its own templates/chat/<name>.jinja
    unlike: tuple[str, ...] = ()  # texts no template of the family contains (tells it from a more general one)
    model_types: tuple[str, ...] = ()  # config.json model_types of the models whose format this is (a model
                                       # that ships no template gets it suggested)

    @property
    def chat_template(self) -> str:
        """llmbuild's HF/GGUF chat template, relative to templates/ (builtin families)."""
        return f"chat/{self.name}.jinja"

    @property
    def ollama_template(self) -> str:
        """The Ollama TEMPLATE (Go text/template, pre-filled through Jinja), relative to templates/."""
        return f"ollama/{self.name}.gotmpl"

    def matches(self, template: str) -> bool:
        return all(m in template for m in self.markers) and not any(u in template for u in self.unlike)


# vLLM's --tool-call-parser names in the vLLM that installer/vllm-env.txt pins (tests/test_chat_families.py
# checks them against the installed one): target.vllm.tool_call_parser is one of them
VLLM_TOOL_PARSERS = (
    "apertus", "cohere_command3", "cohere_command4", "deepseek_v3", "deepseek_v31", "deepseek_v32", "deepseek_v4",
    "deepseek_v41", "dots", "ernie45", "functiongemma", "gemma4", "gigachat3", "glm45", "glm47", "granite",
    "granite-20b-fc", "granite4", "hermes", "hf", "hunyuan_a13b", "hy_v3", "hy_v4", "inkling", "internlm", "jamba",
    "k2_horizon", "kimi_k2", "kimi_k3", "lfm2", "ling3", "llama3_json", "llama4_json", "llama4_pythonic", "longcat",
    "mimo", "minicpm5", "minimax_m2", "minimax_m3", "mistral", "muse_glimmer", "olmo3", "openai", "phi4_mini_json",
    "plamo3", "poolside_v1", "pythonic", "qwen3_coder", "qwen3_json", "qwen3_xml", "seed_oss", "step3", "step3p5",
    "xlam",
)

_THINK = "</think>"
# most specific first: the first family whose markers a template holds is its family
FAMILIES = {f.name: f for f in (
    ChatFamily("deepseek-r1", "DeepSeek-R1 and its Qwen and Llama distills", ("<｜User｜>", "<｜Assistant｜>", _THINK),
               ("<｜end▁of▁sentence｜>",), "<｜end▁of▁sentence｜>", reasoning=True, vllm_tool_parser="deepseek_v3",
               unlike=("<think></think>",)),
    ChatFamily("deepseek-v3", "DeepSeek-V3.1 (non-thinking mode)", ("<｜User｜>", "<｜Assistant｜>", "<think></think>"),
               ("<｜end▁of▁sentence｜>",), "<｜end▁of▁sentence｜>", vllm_tool_parser="deepseek_v31"),
    ChatFamily("glm4", "GLM-4.5, GLM-4.6", ("[gMASK]<sop>", "<|assistant|>"), ("<|user|>", "<|observation|>"),
               None, tools=True, reasoning=True, vllm_tool_parser="glm45"),
    ChatFamily("gemma", "Gemma 2, Gemma 3", ("<start_of_turn>", "<end_of_turn>"), ("<end_of_turn>",),
               "<end_of_turn>", builtin=True, model_types=("gemma", "gemma2", "gemma3", "gemma3_text")),
    ChatFamily("llama3.1", "Llama 3.1, 3.2, 3.3 Instruct", ("<|start_header_id|>", "Cutting Knowledge Date"),
               ("<|eot_id|>", "<|eom_id|>"), "<|eot_id|>", tools=True, vllm_tool_parser="llama3_json"),
    ChatFamily("llama3", "Llama 3 Instruct", ("<|start_header_id|>", "<|eot_id|>"), ("<|eot_id|>",), "<|eot_id|>",
               vllm_tool_parser="llama3_json", builtin=True),
    ChatFamily("phi4", "Phi-4", ("<|im_start|>", "<|im_sep|>", "<|im_end|>"), ("<|im_end|>",), "<|im_end|>"),
    ChatFamily("phi3", "Phi-3, Phi-3.5", ("<|user|>", "<|assistant|>", "<|end|>"), ("<|end|>",), "<|end|>"),
    ChatFamily("mistral-small", "Mistral Small 3.1, 3.2", ("[SYSTEM_PROMPT]", "[INST]", "[/INST]", "[CALL_ID]"),
               ("</s>",), None, tools=True, vllm_tool_parser="mistral", unlike=("[THINK]",)),
    ChatFamily("mistral", "Mistral Nemo, Mistral 7B v0.3", ("[INST]", "[/INST]"), ("</s>",), None,
               tools=True, vllm_tool_parser="mistral", unlike=("[SYSTEM_PROMPT]",)),
    ChatFamily("qwq", "QwQ-32B", ("<|im_start|>", _THINK, "<|im_start|>assistant\\n<think>\\n"),
               ("<|im_end|>", "<|endoftext|>"), "<|im_end|>", tools=True, reasoning=True, vllm_tool_parser="hermes",
               unlike=("reasoning_content",)),
    ChatFamily("qwen3", "Qwen3", ("<|im_start|>", _THINK, "<tool_call>"), ("<|im_end|>", "<|endoftext|>"),
               "<|im_end|>", tools=True, reasoning=True, vllm_tool_parser="hermes"),
    ChatFamily("qwen", "Qwen2, Qwen2.5 Instruct", ("<|im_start|>", "<tool_call>"), ("<|im_end|>", "<|endoftext|>"),
               "<|im_end|>", tools=True, vllm_tool_parser="hermes", builtin=True, model_types=("qwen2",)),
    ChatFamily("chatml", "ChatML models (SmolLM2, OpenHermes, ...)", ("<|im_start|>", "<|im_end|>"), ("<|im_end|>",),
               "<|im_end|>", builtin=True, unlike=("Reasoning Mode",)),
    ChatFamily("alpaca", "base models (Alpaca's instruction format)", ("### Instruction:",), (), None, builtin=True),
)}

# what llmbuild passes to every chat template it trains with or compares: the date of Llama 3.1+'s
# "Today Date" header (those templates' own fallback), and the same day for templates that ask
# strftime_now (Mistral Small's default system prompt), so that training samples, checks and the
# Modelfile's SYSTEM do not change with the day they are built. Servers write the day they run on.
TEMPLATE_DATE = date(2024, 7, 26)
TEMPLATE_VARIABLES = {"date_string": TEMPLATE_DATE.strftime("%d %b %Y"), "strftime_now": TEMPLATE_DATE.strftime}

# the file patterns of a family under templates/, "{family}" filled in (stage specs use them)
CHAT_TEMPLATE_FILE = "chat/{family}.jinja"
OLLAMA_TEMPLATE_FILE = "ollama/{family}.gotmpl"


def detect(template: str) -> ChatFamily | None:
    """The family of a chat template's text, or None when it matches none."""
    return next((family for family in FAMILIES.values() if family.matches(template)), None)


def builtin() -> list[str]:
    return [name for name, family in FAMILIES.items() if family.builtin]
