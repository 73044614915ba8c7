#!/usr/bin/python3
"""PyTorch writes the torch.save files test/pth.test.ts reads, and says what torch.load makes of them.

Usage: pth_oracle.py IN.safetensors OUT.safetensors  (cases as in oracle.py: metadata "cases", tensors "ID.NAME")

Ops:
  save_tv       torchvision's AlexNet from a seed, its state dict saved with real torch.save (legacy: True for
                _use_new_zipfile_serialization=False); its logits for ID.x
  eval_idx      a saved torchvision state dict evaluated on grey IDX images (ID.images, ID.labels) as alexnet eval
                does it: repeated in 3 channels, bilinear resize, ImageNet mean/std; the mean loss and top-1, and the
                last hidden layer's outputs (features)
  save_mixed    a legacy file written by torch.save with shared storages, views and mixed dtypes; torch.load's tensors
  write_views   a legacy file as PyTorch before 1.0 wrote them (storage views in the persistent ids), written by hand
                below; torch.load's tensors
  hostile       legacy files that must be refused (each named in the output's metadata-free tensor list)
"""
import collections
import io
import json
import os
import pickle
import struct
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402  (its safetensors reader and writer)

MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


def load(path):
    try:
        return torch.load(path, weights_only=False)
    except TypeError:  # a torch without weights_only
        return torch.load(path)


class Root:
    """A storage of the hand-written file: its torch class name, key and raw little-endian bytes."""

    def __init__(self, key, type_name, values):
        self.key, self.type_name, self.values = key, type_name, values
        self.numel = values.numel()


class View:
    """A storage view (pre-1.0 files): a key of its own, an element offset and count into its root."""

    def __init__(self, root, key, offset, numel):
        self.root, self.key, self.offset, self.numel = root, key, offset, numel


class Rec:
    """A tensor as torch.save pickles one: _rebuild_tensor_v2(storage, offset, size, stride, …)."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


class LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Root):
            return ("storage", getattr(torch, obj.type_name), obj.key, "cpu", obj.numel, None)
        if isinstance(obj, View):
            r = obj.root
            return ("storage", getattr(torch, r.type_name), r.key, "cpu", r.numel, (obj.key, obj.offset, obj.numel))
        return None


def write_legacy(path, obj, roots, magic=MAGIC, counts=None):
    """The legacy format: magic, protocol, system info, the object, the keys, then each storage's count and bytes."""
    f = io.BytesIO()
    for head in (magic, 1001, SYS_INFO):
        pickle.dump(head, f, protocol=2)
    LegacyPickler(f, protocol=2).dump(obj)
    pickle.dump([r.key for r in roots], f, protocol=2)
    for i, r in enumerate(roots):
        f.write(struct.pack("<q", r.numel if counts is None else counts[i]))
        v = r.values.contiguous()
        f.write((v.view(torch.int16) if v.dtype == torch.bfloat16 else v).numpy().tobytes())
    with open(path, "wb") as out:
        out.write(f.getvalue())


def views_file(path):
    a = Root("1000", "FloatStorage", torch.arange(12, dtype=torch.float32))
    b = Root("2000", "DoubleStorage", torch.arange(10, dtype=torch.float64) / 4)
    va, vb = View(a, "1001", 2, 6), View(b, "2001", 5, 5)
    obj = collections.OrderedDict(
        whole=Rec(a, 0, [3, 4], [4, 1]),
        view=Rec(va, 1, [2, 2], [2, 1]),
        view_t=Rec(va, 0, [3, 2], [1, 3]),
        again=Rec(va, 4, [2], [1]),
        double=Rec(vb, 0, [5], [1]),
    )
    write_legacy(path, obj, [a, b])


def hostile_files(d, marker):
    a = Root("7", "FloatStorage", torch.arange(12, dtype=torch.float32))
    ok = collections.OrderedDict(w=Rec(a, 0, [12], [1]))
    write_legacy(os.path.join(d, "good.pth"), ok, [a])
    write_legacy(os.path.join(d, "magic.pth"), ok, [a], magic=MAGIC + 1)
    write_legacy(os.path.join(d, "count.pth"), ok, [a], counts=[1 << 40])
    write_legacy(os.path.join(d, "size.pth"), collections.OrderedDict(w=Rec(a, 0, [1 << 20], [1])), [a])
    write_legacy(os.path.join(d, "stride.pth"), collections.OrderedDict(w=Rec(a, 2, [4, 3], [3, 1])), [a])
    write_legacy(os.path.join(d, "view.pth"), collections.OrderedDict(w=Rec(View(a, "8", 10, 6), 0, [6], [1])), [a])
    huge = Root("9", "FloatStorage", torch.zeros(0))
    huge.numel = 1 << 50
    write_legacy(os.path.join(d, "numel.pth"), collections.OrderedDict(w=Rec(huge, 0, [4], [1])), [huge])
    write_legacy(os.path.join(d, "evil.pth"), collections.OrderedDict(w=Evil(marker)), [])
    torch.save(torch.nn.Linear(2, 2), os.path.join(d, "whole.pth"), _use_new_zipfile_serialization=False)
    c = Root("5", "ComplexFloatStorage", torch.zeros(2))
    write_legacy(os.path.join(d, "complex.pth"), collections.OrderedDict(w=Rec(c, 0, [1], [1])), [c])


def run_case(op, a, t):
    if op == "save_tv":
        import torchvision

        torch.manual_seed(a["seed"])
        net = torchvision.models.alexnet(num_classes=a.get("num_classes", 1000)).eval()
        torch.save(net.state_dict(), a["path"], _use_new_zipfile_serialization=not a["legacy"])
        if "x" not in t:
            return {}
        with torch.no_grad():
            return {"y": net(t["x"])}
    if op == "eval_idx":
        import torchvision

        net = torchvision.models.alexnet(num_classes=a["num_classes"]).eval()
        net.load_state_dict(load(a["path"]))
        x = t["images"].float().div(255).repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
            1, 3, 1, 1)
        with torch.no_grad():
            y = net(x)
            # the last hidden layer (classifier.5, the 4096 numbers of the paper's Figure 4): alexnet features' default
            h = net.classifier[:6](torch.flatten(net.avgpool(net.features(x)), 1))
        labels = t["labels"].long()
        return {"loss": F.cross_entropy(y, labels).reshape(1),
                "top1": (y.argmax(1) == labels).double().mean().reshape(1), "features": h}
    if op == "save_mixed":
        base = torch.arange(24, dtype=torch.float64).reshape(4, 6)
        g = torch.Generator().manual_seed(3)
        d = collections.OrderedDict(
            base=base, rows=base[1:], cols=base[:, ::2], t=base.t(),
            half=torch.randn(3, 5, generator=g).half(), bf16=torch.randn(7, generator=g).bfloat16(),
            long=torch.tensor([1, 2, -3, 1 << 40]), int=torch.tensor([5, -6], dtype=torch.int32),
            byte=torch.tensor([250, 1], dtype=torch.uint8), bool=torch.tensor([True, False]),
            empty=torch.zeros(0, 3), scalar=torch.tensor(3.5))
        d["half_view"] = d["half"][1]
        torch.save(d, a["path"], _use_new_zipfile_serialization=False)
        return {"k." + k: v for k, v in load(a["path"]).items()}
    if op == "write_views":
        views_file(a["path"])
        return {"k." + k: v for k, v in load(a["path"]).items()}
    if op == "hostile":
        hostile_files(a["dir"], a["marker"])
        return {}
    raise ValueError("unknown op " + op)


def main():
    tensors, meta = oracle.read_safetensors(sys.argv[1])
    out = {}
    for c in json.loads(meta["cases"]):
        t = {k[len(c["id"]) + 1:]: v for k, v in tensors.items() if k.startswith(c["id"] + ".")}
        for k, v in run_case(c["op"], c["args"], t).items():
            out[c["id"] + "." + k] = v
    oracle.write_safetensors(sys.argv[2], out)


if __name__ == "__main__":
    main()
