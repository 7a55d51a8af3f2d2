"""imatrix: the importance matrix the quantizer weighs each weight's rounding error by, computed by
llama.cpp's llama-imatrix on the f16 GGUF of the merged model over calibration text: the training
samples exactly as they were trained (the chat template's text, special tokens included), then the
quant.calibration files. Or, with quant.imatrix=<file>, the user's own file, checked and kept.
imatrix.json records what it was computed on."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from ..adapters import llama_cpp_tools
from ..adapters.llama_cpp_vocab import metadata_and_token_ids
from ..errors import StageError
from ..facts import layout
from ..facts.quant_types import OWN_IMATRIX
from . import ggufs, train_samples
from .context import StageContext

MIN_CHUNK = 16   # tokens: below this a chunk measures nothing worth weighing by
MARGIN = 4       # tokens: llama-imatrix may count a text a token or two shorter than its tokenizer here


def run(ctx: StageContext) -> None:
    if OWN_IMATRIX in ctx.files:
        _own(ctx, ctx.files[OWN_IMATRIX])
        return
    settings = ctx.cfg.quant
    gguf = ggufs.gguf(ctx.inputs["convert"])
    samples = train_samples.texts(ctx.inputs["train"] / layout.DATASET_DIR / layout.TRAIN_SAMPLES)
    extra = ctx.texts()   # quant.calibration, in its order
    text = "\n".join([*samples, *extra]).rstrip()   # llama-imatrix drops a file's last newline itself
    calibration = ctx.out / layout.CALIBRATION_TEXT
    calibration.write_text(text, encoding="utf-8")
    meta, (ids,) = metadata_and_token_ids(gguf, [text])
    tokens = len(ids) + int(meta.adds_bos)            # llama-imatrix adds the BOS the model expects
    # it needs two chunks at least; a few tokens of margin for how it reads the file
    chunk = min(settings.imatrix_ctx, (tokens - MARGIN) // 2)
    if chunk < MIN_CHUNK:
        raise StageError(f"the calibration text is only {tokens} tokens ({len(samples)} training samples"
                         f"{f', {len(extra)} quant.calibration files' if extra else ''}): too little to weigh "
                         f"{gguf.name}'s weights by. Add text with quant.calibration=[file.txt], or set "
                         f"quant.imatrix=none.")
    progress = ctx.progress("importance matrix")
    started = time.perf_counter()
    run_ = llama_cpp_tools.imatrix(gguf, calibration, ctx.out / layout.IMATRIX_FILE, ctx=chunk,
                                   chunks=settings.imatrix_chunks, threads=settings.nthread,
                                   log=ctx.out / layout.IMATRIX_LOG, verbose=ctx.verbose,
                                   progress=lambda detail: progress.update(0, None, detail))
    progress.close()
    record = {"file": layout.IMATRIX_FILE, "source": "training samples", "samples": len(samples),
              "calibration_files": [path.name for path in ctx.files.values()], "tokens": tokens,
              "chunk_tokens": chunk, "chunks": run_.chunks, "perplexity": run_.perplexity,
              "seconds": round(time.perf_counter() - started, 1)}
    _write(ctx, record)
    short = (f"; quant.imatrix_ctx={settings.imatrix_ctx} wants {2 * settings.imatrix_ctx} tokens at least: add "
             f"text with quant.calibration" if chunk < settings.imatrix_ctx else "")
    ctx.say(f"{layout.IMATRIX_FILE}: {run_.chunks} chunks of {chunk} tokens from {len(samples)} training samples"
            f"{f' and {len(extra)} calibration files' if extra else ''} ({tokens:,} tokens), "
            f"{record['seconds']:.1f} s{short}")


def _own(ctx: StageContext, given: Path) -> None:
    """The user's own importance matrix, as llama.cpp reads it."""
    kept = ctx.out / (layout.IMATRIX_OWN + (given.suffix or ".dat"))
    shutil.copyfile(given, kept)
    llama_cpp_tools.check_imatrix(kept, ctx.out / layout.IMATRIX_LOG)
    _write(ctx, {"file": kept.name, "source": "quant.imatrix", "given": given.name})
    ctx.say(f"{kept.name}: quant.imatrix's file, read by llama.cpp")


def _write(ctx: StageContext, record: dict) -> None:
    (ctx.out / layout.IMATRIX_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def recorded(artifact: Path) -> dict:
    """imatrix.json of an imatrix artifact: what the matrix was computed on, and its file's name."""
    return json.loads((artifact / layout.IMATRIX_RECORD).read_text(encoding="utf-8"))
