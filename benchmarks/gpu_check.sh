#!/usr/bin/env bash
# One prepared command for a machine with a CUDA GPU (about 10 minutes, see the README):
# the timings of benchmarks/gpu_check.py (student loop, DiT-XL/2 and SD v1.5 sampling in
# float32 and bf16 autocast), then the paper-scale rehearsal (tests/test_rehearsal.py) with
# every trial on the GPU (bench run gives each trial one GPU when one is visible).
#   bash benchmarks/gpu_check.sh [OUT_DIR]     (PYTHON=... to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
out=${1:-${OUT:-.}}
"$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device is visible')"
"$python" benchmarks/gpu_check.py --out "$out/gpu_check.json"
"$python" -m pytest -q tests/test_rehearsal.py
