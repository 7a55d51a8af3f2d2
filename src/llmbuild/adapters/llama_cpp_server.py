"""llama-cpp-python's OpenAI-compatible server for a built GGUF, behind llmbuild's check of the
requests (llama_cpp_api.py: OpenAI's 4xx errors where the server would answer 500 or 200).

No --chat_format is given: the server then formats chats with the GGUF's own
tokenizer.chat_template, the template the adapter was trained with.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .process import run_in_foreground

API = "llmbuild.adapters.llama_cpp_api"   # llama_cpp.server's arguments and app, requests checked


def command(gguf: Path, alias: str, host: str, port: int, n_ctx: int, n_gpu_layers: int) -> list[str]:
    return [sys.executable, "-m", API, "--model", str(gguf), "--model_alias", alias,
            "--host", host, "--port", str(port), "--n_ctx", str(n_ctx), "--n_gpu_layers", str(n_gpu_layers)]


def serve(argv: list[str]) -> int:
    return run_in_foreground(argv)
