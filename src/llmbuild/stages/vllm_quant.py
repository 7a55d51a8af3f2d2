"""vllm_quant: one vLLM checkpoint of the merged model (plan slot vllm_quant@<scheme>). llm-compressor,
in its own environment, quantizes the merged model to the scheme (facts/vllm_schemes.py), calibrated
on the first target.vllm.calibration_samples training samples as they were trained (the chat
template's text); the compressed-tensors folder keeps the merged model's chat template, tokenizer
and generation config, so vLLM serves the prompt format that was trained."""

from __future__ import annotations

import json
import shutil

from ..adapters import hf_weights, llm_compressor, tool_env
from ..errors import StageError
from ..facts import layout
from ..facts.tool_envs import QUANT
from ..facts.vllm_schemes import IGNORED_LAYERS, SCHEMES, fit_problem
from . import train_samples
from .context import StageContext

SEED = 0
# files of the merged folder a server reads besides weights and tokenizer
CARRIED = ("generation_config.json", layout.CHAT_TEMPLATE)


def run(ctx: StageContext) -> None:
    settings = ctx.cfg.target.vllm
    scheme = SCHEMES[ctx.cfg[layout.VLLM_SCHEME]]
    merged = ctx.inputs["merge"] / layout.MERGED
    problem = fit_problem(scheme, hf_weights.linear_inputs(merged, IGNORED_LAYERS))
    if problem:
        raise StageError(problem)
    python = tool_env.python(QUANT, ctx.project)
    samples = ctx.inputs["train"] / layout.DATASET_DIR / layout.TRAIN_SAMPLES
    texts = train_samples.texts(samples, settings.calibration_samples) if scheme.calibrated else []
    out = ctx.out / layout.QUANTIZED_MODEL
    progress = ctx.progress(f"llm-compressor {scheme.preset}")
    record = llm_compressor.quantize(
        python, merged, out, preset=scheme.preset, method=scheme.method, ignore=list(IGNORED_LAYERS),
        calibration=texts, max_len=settings.calibration_max_len, seed=SEED, log=ctx.out / layout.LLMCOMPRESSOR_LOG,
        verbose=ctx.verbose, scratch_in=ctx.out,
        on_progress=lambda done, total, what: progress.update(done, total, what))
    progress.close()
    for name in CARRIED:
        if (merged / name).is_file():
            shutil.copy2(merged / name, out / name)
    size = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    full = sum(p.stat().st_size for p in merged.glob("*.safetensors"))
    record.update(scheme=scheme.name, preset=scheme.preset, method=scheme.method, ignore=list(IGNORED_LAYERS),
                  calibration_max_len=settings.calibration_max_len, bytes=size, merged_bytes=full)
    (ctx.out / layout.VLLM_QUANT_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    calibrated = (f", calibrated on {record['calibration_samples']} training samples "
                  f"({record['calibration_tokens']:,} tokens)" if texts else ", no calibration")
    ctx.say(f"{scheme.name} ({scheme.preset}, {scheme.method}): {size / 2**20:.1f} MiB ({size / full:.0%} of the "
            f"merged model){calibrated}, {record['seconds']:.1f} s")
