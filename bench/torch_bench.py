#!/usr/bin/python3
"""PyTorch side of `npm run bench`: times training steps and inference of one AlexNet variant.

Usage: torch_bench.py MODEL BATCH THREADS WARMUP ITERS [channels_last]  ->  prints JSON {"train_ips", "infer_ips"}
The architectures are torchvision's and the reference definitions in test/golden/oracle.py.
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "golden"))
import oracle  # noqa: E402


def half():
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Dropout(), nn.Linear(9216, 2048), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(2048, 2048),
        nn.ReLU(inplace=True), nn.Linear(2048, 1000))


def bn():
    def block(i, o, k, s=1, p=0):
        return [nn.Conv2d(i, o, k, s, p), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
    return nn.Sequential(
        *block(3, 96, 11, 4), nn.MaxPool2d(3, 2), *block(96, 256, 5, p=2), nn.MaxPool2d(3, 2),
        *block(256, 384, 3, p=1), *block(384, 384, 3, p=1), *block(384, 256, 3, p=1), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 2))


def build(name):
    if name == "alexnet-torchvision":
        import torchvision
        return torchvision.models.alexnet(), (3, 224, 224), 1000
    if name == "alexnet-d2l":
        return oracle.d2l_alexnet(), (1, 224, 224), 10
    if name == "alexnet-2012":
        return oracle.Paper2012(), (3, 227, 227), 1000
    if name == "alexnet-half":
        return half(), (3, 224, 224), 1000
    if name == "alexnet-bn":
        return bn(), (3, 227, 227), 2
    raise SystemExit("unknown model " + name)


def main():
    name, batch, threads, warmup, iters = sys.argv[1], *map(int, sys.argv[2:6])
    channels_last = len(sys.argv) > 6 and sys.argv[6] == "channels_last"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net, shape, classes = build(name)
    x = torch.randn(batch, *shape)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,))
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    net.train()
    for i in range(warmup + iters):
        if i == warmup:
            t = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    train_ips = batch * iters / (time.perf_counter() - t)
    net.eval()
    with torch.no_grad():
        for i in range(warmup + iters):
            if i == warmup:
                t = time.perf_counter()
            net(x)
    infer_ips = batch * iters / (time.perf_counter() - t)
    print(json.dumps({"train_ips": train_ips, "infer_ips": infer_ips, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
