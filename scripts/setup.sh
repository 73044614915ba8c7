#!/usr/bin/env bash
# Sets up alexnet-ts on a Debian/Ubuntu machine, installing only what is missing:
#   Debian packages: libtorch-dev (the engine), libgloo-dev (c10d's Gloo headers), libdnnl-dev (oneDNN's headers, for
#   inference plans), dataset-fashion-mnist (the demo's data), g++, python3
#   --test adds python3-torch, python3-torchvision and python3-onnx (the oracles the parity tests compare against)
#   clang-format (the lint step checks the C++ formatting), libjemalloc2 (npm run bench's tuned PyTorch peer)
#   chromium (the web page's browser tests, driven by playwright-core; never a downloaded browser) and iproute2
#   (the two-machine data-parallel test's network namespaces), prometheus (promtool checks the server's /metrics)
#   then: npm ci, the native addon (npm run build:addon), the TypeScript build (npm run build:ts).
# LIBTORCH=/path or LIBTORCH_USE_PYTORCH=1 build the addon against another libtorch (then libtorch-dev is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
for arg in "$@"; do
  case "$arg" in
    --test) want_tests=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (expected --test)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# libopenblas0-pthread replaces the reference BLAS that libtorch-dev pulls in: its fully connected layers run ~25× faster.
pkgs=(g++ make python3 dataset-fashion-mnist libopenblas0-pthread)
# libgloo-dev: distributed training (native/distributed.cc) compiles libtorch's Gloo process group, whose header
# includes <gloo/...>, which libtorch-dev lacks; its libgloo.so.0 is the one libtorch_cpu already links.
pkgs+=(libgloo-dev)
# libturbojpeg0-dev: the addon decodes the photo pipeline's JPEGs with libjpeg-turbo (native/jpeg.cc); without it,
# sharp decodes them (slower). libjpeg62-turbo-dev: the same library's own API, with which only a crop's rows and
# columns are decoded.
pkgs+=(libturbojpeg0-dev libjpeg62-turbo-dev)
# libdnnl-dev: oneDNN's headers, for the inference plans (native/onednn.cc) on the libdnnl.so.2 libtorch-dev links.
if [ -z "${LIBTORCH:-}" ] && [ "${LIBTORCH_USE_PYTORCH:-}" != "1" ]; then pkgs+=(libtorch-dev libdnnl-dev); fi
# clang-format: `npm run lint` checks the C++ formatting (Debian 12 ships version 14, which .clang-format is written for).
# libjemalloc2: npm run bench's "PyTorch, allocator tuned" peer (LD_PRELOAD, as Intel's CPU tuning guide recommends).
# chromium: the web page's tests run in a real browser (playwright-core drives Debian's, never a downloaded one).
# iproute2: the two-machine test joins two network namespaces with a veth pair (ip netns, ip link).
# prometheus: its promtool checks the server's /metrics page (`promtool check metrics`); the service is not started.
# python3-pil: npm run bench's photo-pipeline peer (PyTorch's DataLoader over an ImageFolder decodes with PIL).
if [ "$want_tests" = 1 ]; then
  pkgs+=(python3-torch python3-torchvision python3-onnx python3-pil clang-format libjemalloc2 chromium iproute2 prometheus)
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then pkgs+=(nodejs npm); fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages present: ${pkgs[*]}"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "setup.sh: Node.js 20 or later is needed (found $(node --version))" >&2
  exit 1
fi

# onnxruntime-node's install script would download GPU binaries; its CPU build ships inside the package.
export ONNXRUNTIME_NODE_INSTALL=skip
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci"
  npm ci --no-audit --no-fund
else
  say "node_modules up to date"
fi

say "building the native addon"
npm run --silent build:addon
say "building the TypeScript sources"
npm run --silent build:ts
say "ready: try 'npx alexnet --help'"
