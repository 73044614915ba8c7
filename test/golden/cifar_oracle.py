"""The four-layer CIFAR-10 network of cuda-convnet's example-layers/layers-18pct.cfg, written with PyTorch's own
layers as an independent reference for src/models/convnet-cifar.ts.

Usage: python3 cifar_oracle.py IN.safetensors OUT.safetensors
IN holds x and the model's state dict (features.0.weight, ...); its metadata says lrn ("1" or "0"). OUT holds
logits (float64, computed from float64 copies of everything) and rnorm1 (the output of the first normalisation).

cuda-convnet's rnorm (type=rnorm, not cmrnorm) normalises each map over a size x size neighbourhood:
b = a * (1 + (scale / size**2) * sum(a**2))**(-pow), the sum clipped at the border; layer.py divides the configured
scale by size**2 for rnorm. layer-params-18pct.cfg: size 3, scale 0.00005, pow 0.75. Its pooling windows cover
the whole map (ceil mode); average pooling divides by the pixels inside the map.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle import read_safetensors, write_safetensors  # noqa: E402


def rnorm(a, size=3, scale=0.00005, power=0.75):
    # The window's sum of squares written as a convolution with a ones kernel per map (zero padding outside).
    c = a.shape[1]
    ones = torch.ones(c, 1, size, size, dtype=a.dtype)
    s = F.conv2d(a * a, ones, padding=size // 2, groups=c)
    return a * torch.pow(1 + (scale / size**2) * s, -power)


def net(t, x, lrn):
    p = {k: v.double() for k, v in t.items()}
    out = {}
    h = F.conv2d(x, p["features.0.weight"], p["features.0.bias"], padding=2)
    h = F.relu(F.max_pool2d(h, 3, 2, ceil_mode=True))
    i = 3
    if lrn:
        h = rnorm(h)
        out["rnorm1"] = h
        i += 1
    h = F.relu(F.conv2d(h, p[f"features.{i}.weight"], p[f"features.{i}.bias"], padding=2))
    h = F.avg_pool2d(h, 3, 2, ceil_mode=True, count_include_pad=False)
    i += 3
    if lrn:
        h = rnorm(h)
        i += 1
    h = F.relu(F.conv2d(h, p[f"features.{i}.weight"], p[f"features.{i}.bias"], padding=2))
    h = F.avg_pool2d(h, 3, 2, ceil_mode=True, count_include_pad=False)
    out["logits"] = F.linear(h.flatten(1), p["classifier.0.weight"], p["classifier.0.bias"])
    return out


def main():
    t, meta = read_safetensors(sys.argv[1])
    x = t.pop("x").double()
    write_safetensors(sys.argv[2], net(t, x, meta.get("lrn") == "1"))


if __name__ == "__main__":
    main()
