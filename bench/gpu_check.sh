#!/usr/bin/env bash
# One-shot GPU check, under 8 minutes on one H100/H200: paper256 at batch 32, s/kimg per precision mode
# (gpu = NVIDIA's fp16 blocks, gpu_bf16, fp32), NVIDIA's own code side by side when NVIDIA_SG2ADA_DIR is set,
# one blend cell's time, peak memory; rows appended to bench/results.json (figure "gpu_check").
#   bench/gpu_check.sh           # on the GPU machine
#   bench/gpu_check.sh --cpu     # CPU-sized form (tiny 32 px, batch 8, fp16 blocks emulated): checks the script
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ "${1:-}" == "--cpu" ]]; then
  shift
  fp16=(--set model.G_kwargs.synthesis_kwargs.num_fp16_res=2 --set model.G_kwargs.synthesis_kwargs.conv_clamp=256
        --set model.D_kwargs.num_fp16_res=2 --set model.D_kwargs.conv_clamp=256)   # tiny has no fp16 blocks
  exec timeout 1800 "$PY" bench/gpu_check.py --device cpu --config tiny --batch 8 --minibatches 16 --warmup 2 \
    --blend-num-gen 64 "${fp16[@]}" "$@"
fi
exec timeout 470 "$PY" bench/gpu_check.py --device cuda --config paper256 --batch 32 "$@"
