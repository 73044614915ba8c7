#!/usr/bin/env bash
# Packs what a GPU machine without Node or network needs to run scripts/gpu-check.sh into one file,
# .node/bundle.tar.xz (git-ignored): Node itself (binary and headers), the runtime node_modules (sharp with its
# linux-x64 libvips, node-addon-api; not onnxruntime-node: 250 MB, and nothing on the GPU path uses it), dist/ built
# here (so the machine needs no TypeScript) and Fashion-MNIST's IDX files (uncompressed there: the d2l run).
# The device tool carries at most 64 MiB with the working tree, so everything is xz-compressed.
#
# On the machine: tar -C / -xJf .node/bundle.tar.xz  (then /opt/alexnet-bundle holds node/, node_modules/, dist/, data/)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
b="$stage/opt/alexnet-bundle"
mkdir -p "$b/node" "$b/node_modules" "$b/data"
node_prefix=$(dirname "$(dirname "$(command -v node)")")
cp -a "$node_prefix/bin/node" "$b/node/"
mkdir -p "$b/node/include" && cp -a "$node_prefix/include/node" "$b/node/include/"
npm run --silent build:ts
cp -a dist "$b/"
npm ls --omit=dev --all --parseable 2>/dev/null | sed "s#^$PWD/##" | grep '^node_modules/' |
  grep -v -e onnxruntime-node -e global-agent | while read -r m; do
  mkdir -p "$b/$(dirname "$m")" && cp -a "$m" "$b/$m"
done
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ -f "$DATA/$f" ]; then cp "$DATA/$f" "$b/data/"; else gzip -dc "$DATA/$f.gz" >"$b/data/$f"; fi
done
mkdir -p .node
tar -C "$stage" -cf - opt | xz -9 -T0 >.node/bundle.tar.xz
ls -la .node/bundle.tar.xz
