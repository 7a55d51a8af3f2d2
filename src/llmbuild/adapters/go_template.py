"""Render chat requests through an Ollama TEMPLATE with Go's text/template, the way an Ollama server
builds its prompt (ollama_render/main.go). The renderer is compiled once per source version with
the local Go toolchain (standard library only, so offline) and cached per user."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..chat.conversation import decode_arguments
from ..errors import ToolError

SOURCE = Path(__file__).with_name("ollama_render")
INSTALL_GO = ("install Go (Debian/Ubuntu: apt-get install golang-go; see README.md, Set up) or set "
              "target.ollama.verify_template=false to skip this check")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmbuild"


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise ToolError(f"checking the Ollama TEMPLATE needs Go's text/template, and `go` is not on PATH: {INSTALL_GO}")
    return go


def renderer() -> Path:
    """The compiled renderer for this source and this Go release (built on first use)."""
    go = _go()
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False).stdout.strip()
    digest = hashlib.sha256(version.encode())
    for path in sorted(SOURCE.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    binary = _cache_dir() / f"ollama-render-{digest.hexdigest()[:16]}"
    if binary.is_file():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as scratch:
        built = Path(scratch) / binary.name
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
        done = subprocess.run([go, "build", "-o", str(built), "."], cwd=SOURCE, env=env, capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise ToolError(f"building the Ollama template renderer with {version or 'go'} failed:\n"
                            f"{done.stderr.strip()[-2000:]}")
        os.replace(built, binary)  # atomic: a parallel build of the same source is harmless
    return binary


def render(template: str, system: str, fewshot: list[dict[str, Any]],
           requests: list[dict[str, Any]]) -> list[str]:
    """One prompt per request ({"messages": [...], "tools": [...]}), as Ollama would build it from
    a Modelfile with this TEMPLATE, SYSTEM and MESSAGE turns."""
    payload = json.dumps({"template": template, "system": system, "messages": fewshot, "requests": requests},
                         ensure_ascii=False)
    done = subprocess.run([str(renderer())], input=payload, capture_output=True, text=True, check=False,
                          encoding="utf-8")
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise ToolError(f"the Ollama template renderer failed (exit {done.returncode}): "
                        f"{(done.stderr or done.stdout).strip()[-2000:]}") from None
    if "error" in answer:
        raise ToolError(f"Ollama's text/template rejects the TEMPLATE: {answer['error']}")
    return answer["prompts"]


def request_renderer(template: str, system: str,
                     fewshot: list[dict[str, Any]]) -> Callable[[list[dict[str, Any]]], list[str]]:
    """`render` for OpenAI-style requests ({"messages", "tools"}), for a Modelfile with this
    TEMPLATE, SYSTEM and MESSAGE turns."""
    def render_requests(requests: list[dict[str, Any]]) -> list[str]:
        return render(template, system, fewshot, [
            {"messages": [ollama_message(m) for m in r["messages"]], "tools": r["tools"]} for r in requests])
    return render_requests


def ollama_message(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI-style message as Ollama's /api/chat takes it (tool-call arguments are objects)."""
    out = {"role": message["role"], "content": message.get("content") or ""}
    thinking, answer = split_thinking(out["content"])
    if thinking is not None and message["role"] == "assistant":  # Ollama's API keeps it apart
        out.update(thinking=thinking, content=answer)
    calls = []
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function", call)
        calls.append({"function": {"index": index, "name": function["name"],
                                   "arguments": decode_arguments(function.get("arguments"))}})
    if calls:
        out["tool_calls"] = calls
    return out


def split_thinking(content: str) -> tuple[str | None, str]:
    """(the thinking, the answer) of an assistant message written `<think>\\n...\\n</think>\\n\\nanswer`;
    (None, content) when it has no thinking."""
    if not content.startswith("<think>") or "</think>" not in content:
        return None, content
    thinking, answer = content[len("<think>"):].split("</think>", 1)
    return thinking.strip("\n"), answer.lstrip("\n")
