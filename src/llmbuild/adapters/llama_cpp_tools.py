"""llama.cpp's own programs that llama-cpp-python does not ship: `llama-imatrix` (an importance
matrix from calibration text) and `llama-quantize` (a GGUF quantized with one, and with per-tensor
types). Installing llmbuild compiles both from the pinned llama-cpp-python's own llama.cpp sources
(installer/llmbuild_backend.py), so they are the llama.cpp that converts and runs the models.
Each runs as a program of its own: its log goes to the artifact, its errors become one line."""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ToolError
from ..facts.quant_types import QuantizeRecord
from .llama_cpp import CONVERTER_DIR, converter
from .process import run_logged

BIN = CONVERTER_DIR / "bin"
IMATRIX, QUANTIZE = "llama-imatrix", "llama-quantize"


def program(name: str) -> Path:
    """The compiled program, from the same llama.cpp as the installed llama-cpp-python."""
    converter()   # the unpacked sources are the installed version's (else: set up again)
    path = BIN / name
    if not path.is_file():
        raise ToolError(f"llama.cpp's {name} is missing ({path}). It is compiled when llmbuild is installed "
                        f"(CMake and a C++ compiler): run the set-up command in README.md again.")
    return path


@dataclass(frozen=True)
class ImatrixRun:
    chunks: int                    # chunks of `ctx` tokens the matrix was collected over
    perplexity: float | None       # the model's perplexity on the calibration text (llama-imatrix's estimate)


_CHUNKS = re.compile(r"computing over (\d+) chunks")
_ETA = re.compile(r"seconds per pass - ETA (.*)$")
_PPL = re.compile(r"Final estimate: PPL = ([0-9.]+)")
_TOO_SHORT = re.compile(r"tokenizes to only (\d+) tokens")


def imatrix(gguf: Path, text: Path, out: Path, *, ctx: int, chunks: int | None, threads: int, log: Path,
            progress: Callable[[str], None] | None = None, verbose: bool = False) -> ImatrixRun:
    """llama-imatrix over `text` (special tokens parsed: the chat template's markers are the tokens
    that were trained) in chunks of `ctx` tokens, at most `chunks` of them."""
    # run in `out`'s folder, the text and matrix named relative to it: the matrix records its text's name
    # (and a quantized GGUF the matrix's), which must not carry the store's or a temporary folder's path
    argv = [str(program(IMATRIX)), "-m", str(gguf.absolute()), "-f", os.path.relpath(text, out.parent),
            "-o", out.name, "-c", str(ctx), "-b", str(ctx), "-ub", str(ctx), "--parse-special",
            "--output-frequency", "1000000",   # the matrix is written once, at the end
            "-lv", "3",                        # its informational lines: the chunk count and the ETA
            *(["--chunks", str(chunks)] if chunks else []), *(["-t", str(threads)] if threads else [])]

    def read(line: str) -> None:
        found = _CHUNKS.search(line) or _ETA.search(line)
        if found and progress:
            progress(f"{found[1]} chunks" if found.re is _CHUNKS else f"ETA {found[1].strip()}")
    try:
        run_logged(argv, log, what=IMATRIX, quiet=not verbose, on_line=read, cwd=out.parent)
    except ToolError as err:
        short = _TOO_SHORT.search(log.read_text(encoding="utf-8", errors="replace")) if log.is_file() else None
        if short:
            raise ToolError(f"the calibration text is {short[1]} tokens; {IMATRIX} needs at least 2 chunks of "
                            f"{ctx} tokens: add text with quant.calibration, or lower quant.imatrix_ctx") from None
        raise err from None
    if not out.is_file():
        raise ToolError(f"{IMATRIX} wrote no {out.name}; see {log}")
    written = log.read_text(encoding="utf-8", errors="replace")
    counted, ppl = _CHUNKS.search(written), _PPL.search(written)
    return ImatrixRun(chunks=int(counted[1]) if counted else 0, perplexity=float(ppl[1]) if ppl else None)


def check_imatrix(path: Path, log: Path) -> None:
    """llama.cpp reads `path` as an importance matrix (GGUF or the legacy .dat), or a ToolError."""
    try:
        # its argument parser wants a model even where it loads none (statistics read the file alone)
        run_logged([str(program(IMATRIX)), "-m", "/dev/null", "--in-file", str(path), "--show-statistics"], log,
                   what=IMATRIX)
    except ToolError:
        raise ToolError(f"{path} is not an importance matrix llama.cpp can read (llama-imatrix's own .gguf or "
                        f".dat); see {log}") from None


# the quantizer's line per tensor: `[  12/ 272]  blk.0.attn_q.weight - [ 576, 576, ...`
_QUANTIZED_TENSOR = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]")
_CONVERTED = re.compile(r"converting to (\w+)")
_FALLBACK = re.compile(r"falling back to\s+(\w+)")


def read_quantize_log(text: str) -> QuantizeRecord:
    """What llama.cpp's quantizer log says it wrote."""
    return QuantizeRecord(types=dict(Counter(_CONVERTED.findall(text))),
                          fallback=dict(Counter(_FALLBACK.findall(text))))
_REQUIRES = re.compile(r"offending tensor: (\S+)")


def quantize(source: Path, target: Path, quant: str, *, nthread: int = 0, imatrix: Path | None = None,
             tensor_types: dict[str, str] | None = None, output_tensor_type: str | None = None,
             token_embedding_type: str | None = None, log: Path,
             progress: Callable[[int, int, str], None] | None = None) -> QuantizeRecord:
    """llama-quantize `source` -> `target` as the file type `quant`; `tensor_types`: llama.cpp's
    --tensor-type rules (a regular expression searched in each tensor's name -> a ggml type)."""
    argv = [str(program(QUANTIZE))]
    if imatrix is not None:   # by its name alone (run in its folder): the GGUF records it
        argv += ["--imatrix", imatrix.name]
    for pattern, ggml_type in (tensor_types or {}).items():
        argv += ["--tensor-type", f"{pattern}={ggml_type}"]
    if output_tensor_type:
        argv += ["--output-tensor-type", output_tensor_type]
    if token_embedding_type:
        argv += ["--token-embedding-type", token_embedding_type]
    argv += [str(source.absolute()), str(target.absolute()), quant.upper(), *([str(nthread)] if nthread else [])]

    def read(line: str) -> None:
        done = _QUANTIZED_TENSOR.match(line)
        if done and progress:
            progress(int(done[1]), int(done[2]), "tensors")
    try:
        run_logged(argv, log, what=f"{QUANTIZE} ({source.name} -> {quant})", on_line=read,
                   cwd=imatrix.parent if imatrix is not None else None)
    except ToolError as err:
        text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        needs = _REQUIRES.search(text)
        if needs:
            raise ToolError(f"{QUANTIZE} needs an importance matrix for {needs[1]} at {quant}; see {log}") from None
        raise err from None
    if not target.is_file():
        raise ToolError(f"{QUANTIZE} wrote no {target.name}; see {log}")
    return read_quantize_log(log.read_text(encoding="utf-8", errors="replace"))
