"""What a stage gets to work with: exactly what its key covers (plan/view.py builds it), and the
terminal it reports to (tools' own output goes to the artifact's logs)."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from omegaconf import DictConfig

from ..errors import StageError
from ..files.templates import TemplateDir


class Progress:
    """One live line for long work: rewritten in place on a terminal; elsewhere (CI, a file) a line
    after `SPARSE_SECONDS`, then after twice as long each time (30 s, 90 s, 210 s, ...), so a log
    stays short however slow the machine is, and none for work that ends sooner."""

    SPARSE_SECONDS = 30.0

    def __init__(self, stream: TextIO, label: str):
        self.stream, self.label = stream, label
        self.interactive = stream.isatty()
        self.shown = ""
        self.last = time.monotonic()   # non-interactive: the first line comes SPARSE_SECONDS in
        self.wait = self.SPARSE_SECONDS

    def update(self, done: int, total: int | None = None, detail: str = "") -> None:
        count = f"{done}/{total}" if total else f"{done}"
        text = f"  {self.label}: {count}" + (f", {detail}" if detail else "")
        if self.interactive:
            now = time.monotonic()
            if now - self.last >= 0.2 or (total and done >= total):
                self.stream.write("\r" + text[:150].ljust(len(self.shown)))
                self.stream.flush()
                self.shown, self.last = text[:150], now
            return
        now = time.monotonic()
        if now - self.last >= self.wait and not (total and done >= total):
            self.last, self.wait = now, 2 * self.wait
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the live line (a stage's result line follows)."""
        if self.interactive and self.shown:
            self.stream.write("\r" + " " * len(self.shown) + "\r")
            self.stream.flush()
            self.shown = ""


@dataclass(frozen=True)
class StageContext:
    cfg: DictConfig            # the config values this stage's key hashed (+ its spec's `uses`), nothing else
    key: str                   # this artifact's key
    inputs: dict[str, Path]    # upstream slot -> its finished artifact folder
    out: Path                  # empty folder; becomes <store>/<stage>/<key>/ on success
    templates: TemplateDir     # the files under templates/ that this stage's key hashed
    files: dict[str, Path]     # outside inputs by name (model, dataset), their digests in the key
    credentials: dict[str, str] = field(default_factory=dict, repr=False)  # env vars for tools; in no key or file
    terminal: TextIO = field(default=sys.stdout, repr=False)  # where the stage reports; tools' output goes to logs
    verbose: bool = False      # stream every tool's full output to the terminal too
    project: Path | None = None  # the project root: where the tools' own environments are (facts/tool_envs.py)
    record: dict = field(default_factory=dict)  # what the stage chose, kept in the artifact's manifest ("record")
    # a folder outside the artifact that outlives a killed build of this key (training checkpoints), for
    # the next build of the key to go on from; the stage makes it if it needs one and removes it when done
    resume: Path | None = None

    def texts(self) -> list[str]:
        """The outside files (`files`) read as UTF-8 text, in the order their config key lists them."""
        found = []
        for key, path in self.files.items():
            try:
                found.append(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError as err:
                raise StageError(f"{key}: {path} is not UTF-8 text ({err})") from None
        return found

    def relative(self, target: Path) -> str:
        """`target` relative to the artifact folder, valid before and after the final rename
        (both live one level below <store>/<stage>/), so written configs run by hand unchanged."""
        return os.path.relpath(target, self.out)

    def say(self, message: str) -> None:
        self.terminal.write(f"  {message}\n")
        self.terminal.flush()

    def progress(self, label: str) -> Progress:
        return Progress(self.terminal, label)
