"""Run an external program: its output goes to the terminal (progress) and to a log file in the
artifact; a failure becomes one ToolError that quotes the end of the log."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from ..errors import ToolError


def run_logged(argv: list[str], log: Path, *, what: str, env: dict[str, str] | None = None,
               cwd: Path | None = None, quiet: bool = False) -> None:
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
        code = proc.wait()
    if code != 0:
        raise ToolError(f"{what} failed (exit {code}); full log: {log}\n" + "".join(tail).rstrip())
