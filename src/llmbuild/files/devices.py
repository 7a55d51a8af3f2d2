"""The GPUs this process may use, counted without starting CUDA (planning stays fast and imports
no torch): NVIDIA's device files /dev/nvidia0, /dev/nvidia1, ... (a container has those of its
own GPUs), narrowed by CUDA_VISIBLE_DEVICES as CUDA reads it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from ..facts.distributed import AUTO

_DEVICE_FILE = re.compile(r"^nvidia\d+$")


def visible_gpus(environ: Mapping[str, str] | None = None, dev: Path = Path("/dev")) -> int:
    environ = os.environ if environ is None else environ
    try:
        present = sum(1 for p in dev.iterdir() if _DEVICE_FILE.match(p.name))
    except OSError:
        present = 0
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return present
    count = 0
    for entry in listed.split(","):   # CUDA stops at the first entry that names no device
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        count += 1
    return min(count, present)


def first_visible_gpu(environ: Mapping[str, str] | None = None) -> str:
    """The CUDA_VISIBLE_DEVICES value that leaves only the first visible GPU."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    return listed.split(",")[0].strip() if listed else "0"


def devices_in_force(devices, environ: Mapping[str, str] | None = None, dev: Path = Path("/dev")) -> int:
    """train.devices as a number: `auto` is every visible GPU, and 1 on a machine without one (the
    CPU trains in one process)."""
    return max(visible_gpus(environ, dev), 1) if devices == AUTO else int(devices)
