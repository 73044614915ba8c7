#!/usr/bin/python3
"""PyTorch DistributedDataParallel as the oracle for test/ddp-oracle.test.ts.

Usage: ddp_oracle.py DIR

DIR holds what the test wrote for both implementations:
  config.json           {"model": "alexnet-d2l" | "alexnet-bn", "options": {"widths", "dropout"}, "in_channels",
                         "num_classes", "world_size", "steps", "lr", "momentum", "weight_decay"}
  init{R}.safetensors   rank R's initial state dict (they differ: DDP's constructor broadcasts rank 0's)
  batches.safetensors   "r{R}.s{S}.x" and "r{R}.s{S}.y": rank R's batch at step S

First world_size processes (torch.multiprocessing), Gloo over a FileStore in DIR, the network wrapped in
torch.nn.parallel.DistributedDataParallel (its defaults: gradients averaged over the ranks in 25 MB buckets,
buffers broadcast from rank 0 before every forward), torch.optim.SGD; each rank R writes its final state dict
(parameters and buffers) to torch-ddp-rank{R}.safetensors. Then, in this process, rank 0's steps on rank 0's
batches alone without DDP (what training would give if the gradients were never averaged):
torch-local-rank0.safetensors. The test checks that this one differs clearly from the DDP run.

The network is written here with torch.nn layers from the architecture (not from our code); its state_dict keys
are PyTorch's own and load_state_dict(strict) proves they are ours.
"""
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle import read_safetensors, write_safetensors  # noqa: E402


class Net(nn.Module):
    """AlexNet's shape: conv1 11x11 stride 4, conv2 5x5, conv3-5 3x3, max pooling 3/2 after conv1, conv2 and conv5,
    [BatchNorm after each convolution], then a 4096-4096 classifier. d2l: one channel, conv1 padding 1, dropout after
    FC6 and FC7; alexnet-bn: conv1 padding 0, dropout before FC6 and FC7."""

    def __init__(self, cfg, fc6_in):
        super().__init__()
        bn = cfg["model"] == "alexnet-bn"
        c = cfg["options"]["widths"]
        p = cfg["options"]["dropout"]
        layers = []

        def block(cin, cout, k, pool, **kw):
            layers.append(nn.Conv2d(cin, cout, k, **kw))
            if bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU())
            if pool:
                layers.append(nn.MaxPool2d(3, 2))

        block(cfg["in_channels"], c[0], 11, True, stride=4, padding=0 if bn else 1)
        block(c[0], c[1], 5, True, padding=2)
        block(c[1], c[2], 3, False, padding=1)
        block(c[2], c[3], 3, False, padding=1)
        block(c[3], c[4], 3, True, padding=1)
        self.features = nn.Sequential(*layers)
        n = cfg["num_classes"]
        if bn:
            head = [nn.Dropout(p), nn.Linear(fc6_in, 4096), nn.ReLU(), nn.Dropout(p), nn.Linear(4096, 4096), nn.ReLU(),
                    nn.Linear(4096, n)]
        else:
            head = [nn.Linear(fc6_in, 4096), nn.ReLU(), nn.Dropout(p), nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p),
                    nn.Linear(4096, n)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def load_net(d, cfg, rank):
    sd, _ = read_safetensors(os.path.join(d, f"init{rank}.safetensors"))
    fc6 = next(v for k, v in sd.items() if k.startswith("classifier.") and k.endswith(".weight"))
    net = Net(cfg, fc6.shape[1])
    net.load_state_dict(sd, strict=True)
    return net.train()


def train(d, cfg, rank, model, net):
    opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    batches, _ = read_safetensors(os.path.join(d, "batches.safetensors"))
    for s in range(cfg["steps"]):
        x, y = batches[f"r{rank}.s{s}.x"], batches[f"r{rank}.s{s}.y"]
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()


def ddp_rank(rank, d, cfg):
    torch.set_num_threads(1)
    # Gloo needs an address every rank can reach; without GLOO_SOCKET_IFNAME it takes the hostname's, which a
    # container may not resolve: the loopback interface always works for ranks on one machine.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method="file://" + os.path.join(d, "rendezvous"), rank=rank,
                            world_size=cfg["world_size"])
    net = load_net(d, cfg, rank)
    model = nn.parallel.DistributedDataParallel(net)
    train(d, cfg, rank, model, net)
    write_safetensors(os.path.join(d, f"torch-ddp-rank{rank}.safetensors"), net.state_dict())
    dist.barrier()
    dist.destroy_process_group()


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    mp.spawn(ddp_rank, args=(d, cfg), nprocs=cfg["world_size"], join=True)
    torch.set_num_threads(1)
    net = load_net(d, cfg, 0)
    train(d, cfg, 0, net, net)
    write_safetensors(os.path.join(d, "torch-local-rank0.safetensors"), net.state_dict())


if __name__ == "__main__":
    main()
