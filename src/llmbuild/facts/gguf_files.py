"""llama.cpp's file conventions for split GGUFs (`<name>-00001-of-00003.gguf`, as llama-gguf-split
writes them) and its size syntax for `--split-max-size` (500M, 2G)."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError

SHARD = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")
SIZE = re.compile(r"^(?P<number>\d+(\.\d+)?)(?P<unit>[MG])$")


def is_size(text: str) -> bool:
    return bool(SIZE.match(str(text).strip().upper()))


def parse_size(text: str) -> int:
    """llama.cpp's --split-max-size syntax: 500M, 2G (decimal units, as in llama-gguf-split)."""
    match = SIZE.match(str(text).strip().upper())
    if not match:
        raise ConfigError(f"quant.split_max_size = {text!r}: write a size such as 500M or 2G")
    return int(float(match["number"]) * (1000**2 if match["unit"] == "M" else 1000**3))


def shards_of(first: Path) -> list[Path] | None:
    """All files of a split GGUF, given its first shard; None if `first` is not one."""
    match = SHARD.match(Path(first).name)
    if not match:
        return None
    count = int(match["count"])
    return [Path(first).with_name(f"{match['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
