#!/usr/bin/python3
"""PyTorch side of `npm run bench`: times training steps and inference of one AlexNet variant.

Usage: torch_bench.py MODEL BATCH THREADS WARMUP ITERS [channels_last|contiguous] [cpu|cuda] [fp32|bf16|fp16]
  ->  prints JSON {"train_ips", "infer_ips", "torch", "gpu"}
       torch_bench.py pipeline FOLDER WORKERS BATCH BATCHES
  ->  prints JSON {"pipeline_ips", "pipeline_ips_per_cpu", "torch", "pil"}: the photo input pipeline alone, a DataLoader over an ImageFolder
      with RandomResizedCrop(224), RandomHorizontalFlip, ToTensor and ImageNet's Normalize (PIL decoding), one
      warm-up batch then BATCHES timed ones from one stream of shuffled epochs; per CPU: images per CPU-second of
      the main process and the workers together (what a core delivers, whatever else the machine runs).
Mixed precision is torch.autocast (with a GradScaler for fp16), eager mode, cuDNN autotuning on.
The architectures are torchvision's and the reference definitions in test/golden/oracle.py.
"""
import contextlib
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


def torchvision_alexnet():
    """torchvision's AlexNet (models/alexnet.py), for machines whose PyTorch comes without torchvision."""
    try:
        import torchvision
        return torchvision.models.alexnet()
    except ImportError:
        pass

    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(0.5), nn.Linear(9216, 4096), nn.ReLU(inplace=True),
                nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 1000))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return AlexNet()


def build(name):
    if name == "alexnet-torchvision":
        return torchvision_alexnet(), (3, 224, 224), 1000
    if name == "alexnet-d2l":
        return oracle.d2l_alexnet(), (1, 224, 224), 10
    if name == "alexnet-2012":
        return oracle.Paper2012(), (3, 227, 227), 1000
    if name == "alexnet-half":
        return half(), (3, 224, 224), 1000
    if name == "alexnet-bn":
        return bn(), (3, 227, 227), 2
    raise SystemExit("unknown model " + name)


def pipeline(root, workers, batch, batches):
    import PIL
    import torchvision
    import torchvision.transforms as T
    torch.set_num_threads(1)
    transform = T.Compose([
        T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    data = torchvision.datasets.ImageFolder(root, transform=transform)
    n = (batches + 1) * batch
    sampler = torch.utils.data.RandomSampler(data, num_samples=n + (-n) % len(data))
    loader = torch.utils.data.DataLoader(data, batch_size=batch, sampler=sampler, num_workers=workers)
    it = iter(loader)
    next(it)

    def cpu():
        # This process (all its threads) and the DataLoader's worker processes, in seconds.
        total = time.process_time()
        for w in it._workers:
            with open("/proc/%d/stat" % w.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    t, c = time.perf_counter(), cpu()
    for _ in range(batches):
        x, _y = next(it)
    ips = batch * batches / (time.perf_counter() - t)
    ips_per_cpu = batch * batches / (cpu() - c)
    print(json.dumps({"pipeline_ips": ips, "pipeline_ips_per_cpu": ips_per_cpu, "torch": torch.__version__,
                      "pil": PIL.__version__}))


def main():
    if sys.argv[1] == "pipeline":
        return pipeline(sys.argv[2], *map(int, sys.argv[3:6]))
    name, batch, threads, warmup, iters = sys.argv[1], *map(int, sys.argv[2:6])
    channels_last = len(sys.argv) > 6 and sys.argv[6] == "channels_last"
    device = sys.argv[7] if len(sys.argv) > 7 else "cpu"
    precision = sys.argv[8] if len(sys.argv) > 8 else "fp32"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    net, shape, classes = build(name)
    net = net.to(device)
    x = torch.randn(batch, *shape, device=device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device=device)
    # foreach: PyTorch's fastest non-fused SGD (its default where available).
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    scaler = torch.cuda.amp.GradScaler() if precision == "fp16" else None

    def amp():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.split(":")[0], dtype=amp_dtype)

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    net.train()
    for i in range(warmup + iters):
        if i == warmup:
            sync()
            t = time.perf_counter()
        with amp():
            loss = F.cross_entropy(net(x), y)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    train_ips = batch * iters / (time.perf_counter() - t)
    net.eval()
    with torch.no_grad(), amp():
        for i in range(warmup + iters):
            if i == warmup:
                sync()
                t = time.perf_counter()
            net(x)
    sync()
    infer_ips = batch * iters / (time.perf_counter() - t)
    gpu = torch.cuda.get_device_name() if device != "cpu" else None
    print(json.dumps({"train_ips": train_ips, "infer_ips": infer_ips, "torch": torch.__version__, "gpu": gpu}))


if __name__ == "__main__":
    main()
