"""llama.cpp: the HF -> GGUF converter from the pinned llama-cpp-python sdist, and the runtime of
the installed llama-cpp-python. Both are the same llama.cpp version (its quantizer and imatrix
programs, compiled from the same sources: llama_cpp_tools.py)."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from functools import partial
from pathlib import Path
from typing import Callable

from .. import PACKAGE_DIR
from ..chat.conversation import for_template
from ..errors import StageError, ToolError
from ..facts.chat_families import TEMPLATE_VARIABLES
from . import native
from .process import run_logged

CONVERTER_DIR = PACKAGE_DIR / "_llama_cpp"


def converter() -> Path:
    script = CONVERTER_DIR / "convert_hf_to_gguf.py"
    stamp = CONVERTER_DIR / "VERSION"
    installed = importlib.metadata.version("llama_cpp_python")
    if not script.is_file() or not stamp.is_file():
        raise ToolError(f"llama.cpp's converter is missing ({script}). It is unpacked when llmbuild is installed: "
                        f"run the set-up command in README.md again.")
    unpacked = stamp.read_text().split("\n", 1)[0].strip()   # the version, then the file set
    if unpacked != installed:
        raise ToolError(f"the converter comes from llama-cpp-python {unpacked} but {installed} is installed; "
                        f"converter and quantizer must be the same llama.cpp. Re-run the set-up command in README.md.")
    return script


# convert_hf_to_gguf.py's log: one line per tensor written (`INFO:hf-to-gguf:blk.0.attn_q.weight,
# torch.float32 --> F16, shape = {...}`)
_CONVERTED_TENSOR = re.compile(r"^INFO:hf-to-gguf:\S+,\s+torch\.\w+ -->")


def tensor_progress(update: Callable[[int, int | None, str], None], total: int | None = None) -> Callable[[str], None]:
    """A reader of convert_hf_to_gguf.py output: `update(tensors converted, total, "")`."""
    count = [0]

    def read(line: str) -> None:
        if _CONVERTED_TENSOR.match(line):
            count[0] += 1
            update(count[0], total, "tensors")
    return read


# llama.cpp strips the whitespace after every special token but <unk>, <s> and <|endoftext|> (and after
# </s>) only when the GGUF's general.name contains one of these, lowercased (llama-vocab.cpp: Phi-3's
# tokenizers mark their special tokens rstrip, which no GGUF field carries)
RSTRIP_NAMES = ("phi-3", "phi3")


def gguf_name(name: str, strips_after_special_tokens: bool) -> str:
    """The general.name to convert with: `name`, or `name` plus " (Phi-3)" when the tokenizer drops the
    whitespace after its special tokens and the name alone would not make llama.cpp do the same."""
    named = any(marker in name.lower() for marker in RSTRIP_NAMES)
    if strips_after_special_tokens and not named:
        return f"{name} (Phi-3)"
    if named and not strips_after_special_tokens:
        raise StageError(f"model.name {name!r} contains 'phi3' or 'phi-3', for which llama.cpp drops the whitespace "
                        f"after special tokens (its Phi-3 rule, keyed on the GGUF's general.name), but this model's "
                        f"tokenizer keeps it: the GGUF would tokenize prompts differently. Choose a model.name "
                        f"without 'phi3' or 'phi-3'.")
    return name


def convert(hf_folder: Path, outfile: Path, outtype: str, log: Path, verbose: bool = False,
            on_line: Callable[[str], None] | None = None, name: str | None = None) -> None:
    """`name`: the GGUF's general.name (gguf_name; None: the converter's guess from the folder)."""
    argv = [sys.executable, str(converter()), str(hf_folder), "--outfile", str(outfile), "--outtype", outtype,
            *(["--model-name", name] if name else [])]
    run_logged(argv, log, what="convert_hf_to_gguf.py", env={"HF_HUB_OFFLINE": "1"}, quiet=not verbose,
               on_line=on_line)
    if not outfile.is_file():
        raise ToolError(f"convert_hf_to_gguf.py wrote no {outfile.name}; see {log.name}")


def convert_lora(adapter: Path, base_hf: Path, outfile: Path, log: Path, verbose: bool = False) -> None:
    """A PEFT LoRA adapter -> LoRA GGUF (f16) with llama.cpp's convert_lora_to_gguf.py; `base_hf`
    gives the architecture (its config), so the adapter applies to a GGUF of that base."""
    script = converter().with_name("convert_lora_to_gguf.py")
    argv = [sys.executable, str(script), "--base", str(base_hf), "--outfile", str(outfile), "--outtype", "f16",
            str(adapter)]
    run_logged(argv, log, what="convert_lora_to_gguf.py", env={"HF_HUB_OFFLINE": "1"}, quiet=not verbose)
    if not outfile.is_file():
        raise ToolError(f"convert_lora_to_gguf.py wrote no {outfile.name}; see {log.name}")


def check_adapter(gguf: Path, lora: Path, n_ctx: int = 256) -> None:
    """llama.cpp loads `gguf` with the LoRA `lora` applied (in a forked copy: loading computes nothing),
    or raises what it said."""
    native.run_contained(partial(_load_with_adapter, gguf, lora, n_ctx), what=f"loading {gguf.name} with {lora.name}")


def _load_with_adapter(gguf: Path, lora: Path, n_ctx: int) -> None:
    import llama_cpp

    llama_cpp.Llama(model_path=str(gguf), lora_path=str(lora), n_ctx=n_ctx, verbose=False).close()


def chat_formatter(chat_template: str, bos_token: str, eos_token: str) -> Callable[[list, list, bool], str]:
    """llama-cpp-python's Jinja formatter on a GGUF's chat template, the one its server and
    `create_chat_completion` use: (messages, tools, add_generation_prompt) -> prompt text."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatters = {flag: Jinja2ChatFormatter(template=chat_template, eos_token=eos_token, bos_token=bos_token,
                                            add_generation_prompt=flag) for flag in (False, True)}
    variables = {key: value for key, value in TEMPLATE_VARIABLES.items() if key != "strftime_now"}
    for formatter in formatters.values():   # it passes its own strftime_now to the template: the fixed day
        formatter.strftime_now = TEMPLATE_VARIABLES["strftime_now"]

    def render(messages: list, tools: list, add_generation_prompt: bool) -> str:
        return formatters[add_generation_prompt](messages=for_template(messages), tools=tools or None,
                                                 **variables).prompt
    return render
