#!/usr/bin/env bash
# llmbuild's whole graph on a GPU machine that cannot download anything: a random model of
# Qwen2.5-7B's shape (bench/random_model.py), bf16 LoRA (train=gpu-bf16), merge, F16 GGUF,
# Q4_K_M, Modelfile, llama.cpp smoke test, held-out eval (HF models on the GPU, GGUFs in the CPU
# llama.cpp wheel) and report; then a no-op rebuild and a quant-only rebuild (QUANT_REBUILD=0 skips it).
#   bash bench/gpu_build.sh WHEEL_DIR TOKENIZER_DIR OUT_DIR [SHAPE]
# EXTRA adds overrides to every build, e.g. EXTRA=lora.quantization_bit=4 for QLoRA (the bitsandbytes
# wheel in WHEEL_DIR; its CUDA 13.0 and CPU libraries are enough there).
# WHEEL_DIR holds the cp312 wheels listed in shared/gpu/README.md plus hydra-core, doit, gguf,
# filelock, diskcache, cloudpickle, matplotlib and its dependencies, and the llama-cpp-python wheel
# built here. No Go on the device, so the Ollama TEMPLATE check is off (target.ollama.verify_template).
set -euo pipefail
wheels=$1 tokenizer=$2 out=$3 shape=${4:-qwen2.5-7b}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PATH=/tmp/site/bin:$PATH DISABLE_VERSION_CHECK=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
model=/tmp/model-$shape store=/tmp/llmbuild-store
[ -d "$model" ] || python3 bench/random_model.py --shape "$shape" --tokenizer "$tokenizer" --out "$model" | tee -a "$out/gpu.txt"
args=(--db-file "$store/doit.db" "store=$store" model=local "model.path=$model" "model.name=$shape-random"
      model.chat_format=qwen train=gpu-bf16 "train.num_train_epochs=${EPOCHS:-2}" train.logging_steps=1 smoke.max_tokens=48
      target.ollama.verify_template=false eval.max_rows=4 eval.max_new_tokens=16 "eval.quants=[]" ${EXTRA:-})
mkdir -p "$store"
timed() { local start=$SECONDS; "$@"; echo "wall $((SECONDS - start)) s: ${*:3:1} ${*: -1}" | tee -a "$out/gpu.txt"; }
timed python3 -m doit build "${args[@]}" > "$out/build.log" 2>&1 || { tail -50 "$out/build.log"; exit 1; }
timed python3 -m doit build "${args[@]}" > "$out/noop.log" 2>&1
[ "${QUANT_REBUILD:-1}" = 0 ] || timed python3 -m doit build "${args[@]}" quant=q8_0 > "$out/q8.log" 2>&1
python3 - "$store" <<'PY' | tee -a "$out/gpu.txt"
import json, sys
from pathlib import Path
for manifest in sorted(Path(sys.argv[1]).glob("*/*/manifest.json"), key=lambda p: p.stat().st_mtime):
    data = json.loads(manifest.read_text())
    size = sum(f["size"] for f in data["files"].values()) / 2**30
    print(f"{data['stage']:<9} {data['key'][:8]}  {data['seconds']:8.1f} s  {size:6.2f} GiB")
PY
cp "$store"/train/*/adapter/trainer_log.jsonl "$out/" 2>/dev/null || true
cp "$store"/smoke/*/answers.md "$out/" 2>/dev/null || true
cp "$store"/eval/*/eval.json "$store"/report/*/report.md "$store"/report/*/*.png "$out/" 2>/dev/null || true
grep -E "train_samples_per_second|train_runtime" "$out/build.log" | tail -2 | tee -a "$out/gpu.txt"
