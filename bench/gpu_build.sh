#!/usr/bin/env bash
# llmbuild's whole graph on a GPU machine that cannot download anything: a random model of
# Qwen2.5-7B's shape (bench/random_model.py), bf16 LoRA (train=gpu-bf16), merge, F16 GGUF,
# Q4_K_M, Modelfile, llama.cpp smoke test, held-out eval (HF models on the GPU, GGUFs in the CPU
# llama.cpp wheel) and report; then a no-op rebuild and a quant-only rebuild (QUANT_REBUILD=0 skips it).
#   bash bench/gpu_build.sh WHEEL_DIR TOKENIZER OUT_DIR [SHAPE]
# WHEEL_DIR "-" uses the Python environment as it is (llmbuild installed in it). TOKENIZER is a llama.cpp
# vocabulary such as src/llmbuild/_llama_cpp/models/ggml-vocab-qwen2.gguf (rebuilt as llmbuild imports a
# GGUF's tokenizer, so the parity check passes) or an HF tokenizer folder; the model's chat template is
# the tokenizer's own.
# EXTRA adds overrides to every build, e.g. EXTRA=lora.quantization_bit=4 for QLoRA (the bitsandbytes
# wheel in WHEEL_DIR; its CUDA 13.0 and CPU libraries are enough there).
# WHEEL_DIR holds the cp312 wheels listed in shared/gpu/README.md plus hydra-core, doit, gguf,
# filelock, diskcache, cloudpickle, matplotlib and its dependencies, and the llama-cpp-python wheel
# built here. No Go on the device, so the Ollama TEMPLATE check is off (target.ollama.verify_template).
set -euo pipefail
wheels=$1 tokenizer=$2 out=$3 shape=${4:-qwen2.5-7b}
if [ "$wheels" != - ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl
  export PYTHONPATH=/tmp/site:$PWD/src PATH=/tmp/site/bin:$PATH
fi
export DISABLE_VERSION_CHECK=1 PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU: nvidia-smi failed"; } | tee "$out/gpu.txt"
model=/tmp/model-$shape store=/tmp/llmbuild-store
[ -d "$model" ] || python3 bench/random_model.py --shape "$shape" --tokenizer "$tokenizer" --out "$model" | tee -a "$out/gpu.txt"
args=(--db-file "$store/doit.db" "store=$store" model=local "model.path=$model" "model.name=$shape-random"
      train=gpu-bf16 "train.num_train_epochs=${EPOCHS:-2}" train.logging_steps=1 smoke.max_tokens=48
      target.ollama.verify_template=false eval.max_rows=4 eval.max_new_tokens=16 "eval.quants=[]" ${EXTRA:-})
mkdir -p "$store"
# LABEL LOG COMMAND...: the command's output in LOG, its wall time in gpu.txt, its exit status kept
timed() {
  local label=$1 log=$2 start=$SECONDS rc=0
  shift 2
  "$@" > "$log" 2>&1 || rc=$?
  echo "wall $((SECONDS - start)) s: $label$([ $rc = 0 ] || echo " FAILED (exit $rc)")" | tee -a "$out/gpu.txt"
  [ $rc = 0 ] || tail -50 "$log"
  return $rc
}
timed "cold build ${EXTRA:-}" "$out/build.log" python3 -m doit build "${args[@]}"
timed "no-op rebuild" "$out/noop.log" python3 -m doit build "${args[@]}"
[ "${QUANT_REBUILD:-1}" = 0 ] || timed "quant=q8_0 rebuild" "$out/q8.log" python3 -m doit build "${args[@]}" quant=q8_0
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
{ grep -E "train_samples_per_second|train_runtime|tokens/s" "$out/build.log" || true; } | tail -3 | tee -a "$out/gpu.txt"
