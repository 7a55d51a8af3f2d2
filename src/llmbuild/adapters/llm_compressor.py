"""llm-compressor, run in its own environment (facts/tool_envs.py QUANT) by
adapters/llmcompressor_worker.py: plain values in, a compressed-tensors folder out, its failure
as one ToolError naming the last error line and the log."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

from ..errors import ToolError
from .process import run_logged

WORKER = "llmbuild.adapters.llmcompressor_worker"
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}
# llm-compressor's tqdm bars: "(1/3): Calibrating:  64%|######4   | 23/36 [00:01<00:01, 12.28it/s]"
_PROGRESS = re.compile(r"(?:\(\d+/\d+\): )?(?P<what>[A-Za-z][\w ]*?):\s+\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)")


def quantize(python: Path, model: Path, out: Path, *, preset: str, method: str, ignore: list[str],
             calibration: list[str], max_len: int, seed: int, log: Path, verbose: bool, scratch_in: Path,
             on_progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """Quantize `model` into `out`; returns the worker's record (seconds, calibration samples and tokens).
    `scratch_in`: where the request (with the calibration text) is written, the artifact's unfinished
    folder, so that a killed run leaves it nowhere else. `on_progress(done, total, what)` follows
    llm-compressor's progress bars."""
    request = {"model": str(model), "out": str(out), "preset": preset, "method": method, "ignore": ignore,
               "calibration": calibration, "max_len": max_len, "seed": seed}
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=scratch_in) as scratch:
        request_file, result_file = Path(scratch) / "request.json", Path(scratch) / "result.json"
        request_file.write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
        run_logged([str(python), "-m", WORKER, str(request_file), str(result_file)], log,
                   what=f"llm-compressor ({preset})", env=ENV, quiet=not verbose,
                   on_line=lambda line: _progress(line, on_progress))
        if not result_file.is_file():
            raise ToolError(f"llm-compressor ({preset}) finished without a result; see {log}")
        return json.loads(result_file.read_text(encoding="utf-8"))


def _progress(line: str, on_progress) -> None:
    updates = [part for part in line.split("\r") if part.strip()]   # a bar redraws itself after \r
    found = _PROGRESS.search(updates[-1]) if updates else None
    if on_progress and found:
        on_progress(int(found["done"]), int(found["total"]), found["what"].strip().lower())
