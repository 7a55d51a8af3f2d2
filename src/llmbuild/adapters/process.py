"""Run an external program: its output goes to a log file in the artifact (and to the terminal too
when asked), each line to an optional progress reader; a failure becomes one ToolError with the
tool's own last error line and the log's path."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Callable

from ..errors import ToolError


def run_logged(argv: list[str], log: Path, *, what: str, env: dict[str, str] | None = None,
               cwd: Path | None = None, quiet: bool = True, on_line: Callable[[str], None] | None = None) -> None:
    """`quiet=False` streams the tool's output to the terminal as well; `on_line` sees every line
    (progress bars arrive one update per line)."""
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    tail: deque[str] = deque(maxlen=25)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        out.write("$ " + " ".join(argv) + "\n")
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
                                    cwd=cwd, text=True, errors="replace", bufsize=1)
        except FileNotFoundError:
            raise ToolError(f"{what}: cannot run '{argv[0]}': not installed. "
                            f"Run the set-up command in README.md.") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            tail.append(line)
            if not quiet:
                sys.stdout.write(line)
                sys.stdout.flush()
            if on_line is not None:
                on_line(line)
        code = proc.wait()
    if code != 0:
        raise ToolError(f"{what} {_how(code)}: {last_error(list(tail))}; full log: {log}")


def _how(code: int) -> str:
    """How a tool ended: `failed (exit 1)`, or `crashed (SIGABRT)` for one a signal ended."""
    return f"failed (exit {code})" if code >= 0 else killed_by(-code)


def killed_by(number: int) -> str:
    """`crashed (SIGABRT)` (a C++ library's abort, a segfault), or for SIGKILL, most often the kernel's
    out-of-memory killer, `was killed (SIGKILL: out of memory?)`."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return "was killed (SIGKILL: out of memory?)" if number == signal.SIGKILL else f"crashed ({name})"


# `ValueError: ...`, `torch.OutOfMemoryError: ...`, `RuntimeError`: the line a Python tool dies with
_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?\w*(?:Error|Exception|Exit|Interrupt)\b:?.*")


# torchrun's own line when a process it started failed: the process's error is the one to report
_LAUNCHER_LINE = re.compile(r"^(?:[\w.]+\.)?ChildFailedError\b")


def last_error(lines: list[str]) -> str:
    """The tool's own last error line (a Python exception's last line; under torchrun, the failed
    process's, not torchrun's), else its last output line."""
    stripped = [line.strip() for line in lines if line.strip()]
    errors = [line for line in stripped if _ERROR_LINE.match(line)]
    for line in reversed(errors):
        if not _LAUNCHER_LINE.match(line):
            return line[:500]
    if errors:
        return errors[-1][:500]
    return stripped[-1][:500] if stripped else "no output"


_PR_SET_PDEATHSIG = 1   # linux/prctl.h: the signal a process gets when the thread that started it ends


def _dies_with_this_process():
    """For Popen's preexec_fn: the child gets SIGTERM when this process dies, even by SIGKILL, which no
    handler here sees (Linux; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl   # resolved here: the forked child only calls it
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run_in_foreground(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Run a server in the foreground until it exits, the user presses Ctrl-C, or this process is
    told to stop (SIGTERM: a service manager, `kill`) or killed (SIGKILL); the server never outlives it."""
    process = subprocess.Popen(argv, env={**os.environ, **env} if env else None, cwd=cwd,
                               preexec_fn=_dies_with_this_process())
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: process.terminate())
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
