#!/usr/bin/env bash
# Builds alexnet-ts against an installed CUDA PyTorch and measures it there: the GPU tests, the benchmark against
# PyTorch on the same GPU (batch 256, ratios and MFU), and d2l's recipe end to end (alexnet-d2l, Fashion-MNIST at
# 224, 10 epochs: time and test accuracy). Anyone with a CUDA machine can repeat the numbers with it.
#
# Needs: node >= 20 on PATH; node_modules (npm ci); python3 with a CUDA build of torch (PYTHON=… to choose);
# Fashion-MNIST's IDX files in /usr/share/datasets/fashion-mnist or FASHION_MNIST=DIR.
# Writes: build/ (the CUDA addon), dist/, bench/results/, runs/gpu-check/ (logs, metrics, checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT_DIR:-runs/gpu-check}
mkdir -p "$OUT"
"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "this PyTorch sees no CUDA device"
print("PyTorch", torch.__version__, "CUDA", torch.version.cuda, "on", torch.cuda.get_device_name())
PYEOF

# The addon, against the libtorch inside that PyTorch (C++17; C++20 for PyTorch builds that require it).
export PATH="$(dirname "$(command -v "$PY")"):$PATH"
LIBTORCH_USE_PYTORCH=1 node scripts/build-addon.js || CXXSTD=c++20 LIBTORCH_USE_PYTORCH=1 node scripts/build-addon.js
node node_modules/typescript/bin/tsc -p tsconfig.json
node bin/alexnet.js info | tee "$OUT/info.txt"

# Tests: the GPU ones must run (not skip) here; the CPU suite's oracle tests skip where torchvision/onnx are missing.
ALEXNET_REQUIRE_GPU=1 ALEXNET_ORACLE_PYTHON="$PY" node scripts/run-tests.js gpu precision tensor models 2>&1 | tee "$OUT/tests.txt"

# Benchmark: ours (default GPU configuration: channels-last, bf16 autocast, cuDNN autotuning) against PyTorch eager
# NCHW and channels-last in the same precision, alternating rounds.
ALEXNET_ORACLE_PYTHON="$PY" node dist/bench/bench.js --device cuda --batch-size 256 --models alexnet-torchvision,alexnet-d2l \
  --rounds 3 --warmup 10 --iters 50 --out bench/results 2>&1 | tee "$OUT/bench.txt"

# d2l end to end: 10 epochs at 224 on the GPU (alexnet demo on a GPU runs the same recipe).
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
rm -f "$OUT/d2l.jsonl"
/usr/bin/env time -p node bin/alexnet.js train --device cuda --data "$DATA" --epochs 10 --metrics "$OUT/d2l.jsonl" \
  --save "$OUT/d2l.safetensors" 2>&1 | grep -v ETA | tee "$OUT/d2l.txt"
node -e '
const h = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
const last = h[h.length - 1];
const train = h.reduce((a, r) => a + r.epoch_seconds, 0);
console.log(`d2l recipe: ${h.length} epochs, test accuracy ${last.test_acc.toFixed(4)}, training time ${train.toFixed(1)} s (the epochs, evaluation excluded), total ${last.elapsed_seconds.toFixed(1)} s`);
' "$OUT/d2l.jsonl" | tee -a "$OUT/d2l.txt"
