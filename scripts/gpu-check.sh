#!/usr/bin/env bash
# Builds alexnet-ts against an installed CUDA PyTorch and measures it there: the GPU tests, the benchmark against
# PyTorch on the same GPU (batch 256, ratios and MFU), and d2l's recipe end to end (alexnet-d2l, Fashion-MNIST at
# 224, 10 epochs: time and test accuracy). Anyone with a CUDA machine can repeat the numbers with it.
#
# Needs: node >= 20 on PATH; node_modules (npm ci); python3 with a CUDA build of torch (PYTHON=… to choose);
# Fashion-MNIST's IDX files in /usr/share/datasets/fashion-mnist or FASHION_MNIST=DIR. Without TypeScript in
# node_modules, the dist/ already there is used (scripts/pack-device.sh packs one for a machine without Node).
# Writes: build/ (the CUDA addon), dist/, bench/results/, runs/gpu-check/ (logs, metrics, checkpoint).
# Every stage runs even when an earlier one failed (except the build); the exit status says whether all passed.
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
# Without CUDA graphs as the last resort, so that everything else is still measured.
LIBTORCH_USE_PYTORCH=1 node scripts/build-addon.js || CXXSTD=c++20 LIBTORCH_USE_PYTORCH=1 node scripts/build-addon.js ||
  ALEXNET_NO_CUDA_GRAPHS=1 LIBTORCH_USE_PYTORCH=1 node scripts/build-addon.js
if [ -f node_modules/typescript/bin/tsc ]; then node node_modules/typescript/bin/tsc -p tsconfig.json; fi
node bin/alexnet.js info | tee "$OUT/info.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >>"$OUT/info.txt" 2>&1 || true
failed=()
# GPU_STAGES="tests bench d2l" (the default) picks the stages to run.
stage() { # stage NAME: prints the stage's wall time; a failure is remembered, the next stage still runs
  local name=$1 t0=$SECONDS
  shift
  case " ${GPU_STAGES:-tests bench d2l} " in *" $name "*) ;; *) return 0 ;; esac
  if "$@"; then echo "[gpu-check] $name: ok in $((SECONDS - t0)) s"; else
    echo "[gpu-check] $name: FAILED after $((SECONDS - t0)) s"
    failed+=("$name")
  fi
}

# Tests: the GPU ones must run (not skip) here; the CPU suite's oracle tests skip where torchvision/onnx are missing.
tests() { ALEXNET_REQUIRE_GPU=1 ALEXNET_ORACLE_PYTHON="$PY" node scripts/run-tests.js ${GPU_TESTS:-gpu precision} 2>&1 | tee "$OUT/tests.txt"; }
stage tests tests

# Benchmark: ours (default GPU configuration: channels-last, bf16 autocast, cuDNN autotuning) against PyTorch eager
# NCHW and channels-last in the same precision, alternating rounds.
bench() {
  ALEXNET_ORACLE_PYTHON="$PY" node dist/bench/bench.js --device cuda --batch-size 256 --models alexnet-torchvision,alexnet-d2l \
    --rounds "${BENCH_ROUNDS:-3}" --warmup 10 --iters "${BENCH_ITERS:-50}" --out "$OUT" 2>&1 | tee "$OUT/bench.txt"
}
stage bench bench

# d2l end to end: 10 epochs at 224 on the GPU (alexnet demo on a GPU runs the same recipe).
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
d2l() {
  rm -f "$OUT/d2l.jsonl" "$OUT/d2l.safetensors"
  node bin/alexnet.js train --device cuda --data "$DATA" --epochs 10 --metrics "$OUT/d2l.jsonl" \
  --save "$OUT/d2l.safetensors" 2>&1 | grep -v ETA | tee "$OUT/d2l.txt"
  node -e '
const h = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse).filter((r) => r.kind === "epoch");
const last = h[h.length - 1];
const train = h.reduce((a, r) => a + r.epoch_seconds, 0);
console.log(`d2l recipe: ${h.length} epochs, test accuracy ${last.test_acc.toFixed(4)}, training time ${train.toFixed(1)} s (the epochs, evaluation excluded), total ${last.elapsed_seconds.toFixed(1)} s`);
' "$OUT/d2l.jsonl" | tee -a "$OUT/d2l.txt"
}
stage d2l d2l
rm -f "$OUT/d2l.safetensors"
if [ "${#failed[@]}" -gt 0 ]; then echo "[gpu-check] failed: ${failed[*]}"; exit 1; fi
echo "[gpu-check] every stage passed"
