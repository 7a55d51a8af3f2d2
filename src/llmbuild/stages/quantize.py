"""quantize: the converted GGUF -> quant.type with llama.cpp's llama-quantize, with the importance
matrix when the type reads one (plan/graph.py decides: it is then an input of this artifact) and
quant.tensor_types, quant.output_tensor_type and quant.token_embedding_type over the type's own
choices. quantize.json records the tensor types written, how many tensors fell back from the
requested type because their rows do not fit its block, the bits per weight as built, and the
importance matrix used (eval, the report and `doit size` show them)."""

from __future__ import annotations

import json
import math
import re

from ..adapters import llama_cpp_tools
from ..adapters.gguf_header import read_gguf_header
from ..errors import StageError
from ..facts import layout
from ..facts.quant_types import fallback_text
from . import ggufs, imatrix
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    source = layout.converted_gguf(ctx.inputs["convert"], cfg.model.name, cfg.quant.convert_type)
    target = layout.quantized_gguf(ctx.out, cfg.model.name, cfg.quant.type)
    rules = dict(cfg.quant.tensor_types or {})
    if rules:
        check_patterns(rules, list(read_gguf_header(source)[1]))
    matrix_record = imatrix.recorded(ctx.inputs["imatrix"]) if "imatrix" in ctx.inputs else None
    matrix = ctx.inputs["imatrix"] / matrix_record["file"] if matrix_record else None
    progress = ctx.progress(f"quantizing to {cfg.quant.type}")
    written = llama_cpp_tools.quantize(
        source, target, cfg.quant.type, nthread=cfg.quant.nthread, imatrix=matrix, tensor_types=rules,
        output_tensor_type=cfg.quant.output_tensor_type, token_embedding_type=cfg.quant.token_embedding_type,
        log=ctx.out / layout.QUANTIZE_LOG, progress=progress.update)
    progress.close()
    ggufs.record(ctx.record, gguf=target)
    record = written.record_json(cfg.quant.type)
    record["bits_per_weight"] = bits_per_weight(target)
    record["imatrix"] = matrix_record
    (ctx.out / layout.QUANTIZE_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    ratio = target.stat().st_size / source.stat().st_size
    fell_back = (f"; {fallback_text(record, ' quantized tensors')} fell back from {cfg.quant.type}, their rows "
                 f"do not fit its block ({layout.QUANTIZE_LOG})" if written.fallback else "")
    ctx.say(f"{target.name}: {target.stat().st_size / 2**20:.1f} MiB ({ratio:.0%} of {cfg.quant.convert_type}, "
            f"{record['bits_per_weight']:.2f} bits per weight){', importance matrix' if matrix else ''}{fell_back}")


def check_patterns(rules: dict[str, str], names: list[str]) -> None:
    """Every quant.tensor_types pattern matches a tensor of the model (llama.cpp searches each
    tensor's name for it), or one error that names the model's kinds of tensor."""
    for pattern in rules:
        if not any(re.search(pattern, name) for name in names):
            kinds = sorted({re.sub(r"^blk\.\d+\.", "", name).removesuffix(".weight") for name in names
                            if name.endswith(".weight")})
            raise StageError(f"quant.tensor_types.{pattern}: matches no tensor of this model. Its weights are "
                             f"{', '.join(kinds)} (blk.N. before the per-layer ones), e.g. "
                             f"quant.tensor_types={{{kinds[0]}: q8_0}}")


def bits_per_weight(gguf) -> float:
    """The file's bits per weight as llama.cpp reports it when loading: its size over its weights."""
    weights = sum(math.prod(dims) for dims in read_gguf_header(gguf)[1].values())
    return round(8 * gguf.stat().st_size / weights, 3)
