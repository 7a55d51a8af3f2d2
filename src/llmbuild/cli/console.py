"""While a stage runs, everything the libraries in this process print (transformers' and
LLaMA-Factory's logs, progress bars, llama.cpp's C-level messages) goes to the artifact's
`stage.log`; the stage itself reports to the terminal it is handed. With full output asked for,
nothing is redirected."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

from ..facts import layout

STAGE_LOG = layout.STAGE_LOG


@contextmanager
def quiet_libraries(log: Path, enabled: bool = True) -> Iterator[TextIO]:
    """Yield the terminal; file descriptors 1 and 2 point at `log` until the block ends."""
    if not enabled:
        yield sys.stdout
        return
    _flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    with open(log, "a", encoding="utf-8") as target:
        os.dup2(target.fileno(), 1)
        os.dup2(target.fileno(), 2)
        try:
            yield terminal
        finally:
            _flush()   # what the libraries left in Python's buffers belongs in the log too
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()


def _flush() -> None:
    for stream in {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s}.values():
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
