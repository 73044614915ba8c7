#!/usr/bin/python3
"""PyTorch oracle for alexnet-ts parity tests.

Usage: oracle.py IN.safetensors OUT.safetensors

IN holds the inputs of several cases; its metadata "cases" is a JSON list of {"id", "op", "args"}, and the
tensors of case ID are named "ID.NAME". For each case the oracle computes the op with PyTorch / torchvision,
backpropagates the upstream gradient "ID.gy" (when given) and writes "ID.y" (and other outputs) and
"ID.grad.NAME" for every floating-point input. The tests compare them with alexnet-ts.

Reference formulas that PyTorch lacks are written out independently here (TensorFlow's tf.nn.lrn).
"""
import json
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

DT = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
      "U8": torch.uint8, "I32": torch.int32, "I64": torch.int64, "BOOL": torch.bool}
DT_NAME = {v: k for k, v in DT.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for k, e in header.items():
        b, end = e["data_offsets"]
        raw = bytearray(data[base + b: base + end])
        t = torch.frombuffer(raw, dtype=DT[e["dtype"]]) if raw else torch.empty(0, dtype=DT[e["dtype"]])
        out[k] = t.reshape(e["shape"]).clone()
    return out, meta


def write_safetensors(path, tensors):
    header, chunks, off = {}, [], 0
    for k, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[k] = {"dtype": DT_NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def tf_lrn(x, depth_radius, bias, alpha, beta):
    """tf.nn.lrn written out: sqr_sum[c] = sum(x[c - r .. c + r]^2) clipped at the ends."""
    c = x.shape[1]
    sq = x * x
    sums = []
    for i in range(c):
        lo, hi = max(0, i - depth_radius), min(c, i + depth_radius + 1)
        sums.append(sq[:, lo:hi].sum(dim=1))
    sqr_sum = torch.stack(sums, dim=1)
    return x / (bias + alpha * sqr_sum) ** beta


def d2l_alexnet():
    return nn.Sequential(
        nn.Conv2d(1, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.Linear(6400, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, 10))


class TowerLRN(nn.Module):
    """The paper's LRN on each GPU's own maps: PyTorch's LocalResponseNorm applied to each half of the channels
    separately (cuda-convnet2's rnorm1a/rnorm1b), so the window never crosses the tower boundary."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)

    def forward(self, x):
        return torch.cat([self.norm(half) for half in x.chunk(2, dim=1)], dim=1)


class Paper2012(nn.Module):
    """The 2012 paper's network written with PyTorch layers; LRN with the paper's k=2, n=5, alpha=1e-4 on the
    sum is PyTorch's LocalResponseNorm with alpha = 5 * 1e-4 (PyTorch divides alpha by size), per tower.
    fc6_in: FC6's input width, 9216 at the paper's 227x227 input (smaller inputs give smaller maps)."""

    def __init__(self, fc6_in=9216):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), TowerLRN(), nn.MaxPool2d(3, 2),
            nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), TowerLRN(), nn.MaxPool2d(3, 2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(fc6_in, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(),
            nn.Linear(4096, 1000))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def run_model(net, t, prefix, x_name="x", autocast=None, dtype="float32", channels_last=False):
    params = {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)}
    sd = {k: params[k] for k in net.state_dict().keys()}
    net.load_state_dict(sd)
    net.eval()
    x = params[x_name]
    # dtype "float64": the same (float32-valued) weights and input, computed in double precision: the reference
    # that float32 and bfloat16 results are measured against.
    if dtype == "float64":
        net.double()
        x = x.double()
    if channels_last:
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    # autocast: "bfloat16" runs forward and loss under torch.autocast("cpu"), as mixed-precision training does.
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast == "bfloat16"):
        logits = net(x)
        loss = F.cross_entropy(logits, params["target"])
    loss.backward()
    out = {"y": logits, "loss": loss.reshape(1)}
    for k, p in net.named_parameters():
        out["grad." + k] = p.grad
    return out


def make_model(op, t=None):
    if op == "model_torchvision":
        import torchvision
        return torchvision.models.alexnet()
    if op == "model_d2l":
        return d2l_alexnet()
    if op == "model_2012":
        return Paper2012(t["classifier.1.weight"].shape[1] if t and "classifier.1.weight" in t else 9216)
    raise ValueError(op)


def json_tensor(obj):
    return torch.frombuffer(bytearray(json.dumps(obj).encode()), dtype=torch.uint8).clone()


def run_case(op, a, t):
    if op == "image_folder":
        # torchvision's ImageFolder on a folder tree: classes and (relative path, label) samples, in its order.
        import os
        import torchvision
        ds = torchvision.datasets.ImageFolder(a["root"])
        return {"json": json_tensor({"classes": ds.classes,
                                     "samples": [[os.path.relpath(p, a["root"]), l] for p, l in ds.samples]})}
    if op == "crops":
        # torchvision's evaluation crops on a PIL image: CenterCrop, and TenCrop (optionally of the centre square).
        import numpy as np
        import torchvision.transforms as T
        from PIL import Image
        img = Image.open(a["path"]).convert("RGB")
        img = T.Resize(a["short_side"])(img)
        center = np.array(T.CenterCrop(a["size"])(img))
        base = T.CenterCrop(a["short_side"])(img) if a["paper"] else img
        ten = np.stack([np.array(c) for c in T.TenCrop(a["size"])(base)])
        return {"center": torch.from_numpy(center), "ten": torch.from_numpy(ten)}
    if op == "rrc_params":
        # Many draws of torchvision's RandomResizedCrop.get_params on a w×h image: (top, left, height, width) rows.
        import torchvision.transforms as T
        from PIL import Image
        torch.manual_seed(0)
        img = Image.new("RGB", (a["w"], a["h"]))
        rows = [T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(a["n"])]
        return {"params": torch.tensor(rows, dtype=torch.float64)}
    if op == "image_stats":
        # Channel mean, std, covariance and its eigen-decomposition over all pixels of the images, on [0, 1].
        import numpy as np
        from PIL import Image
        px = np.concatenate([np.array(Image.open(p).convert("RGB")).reshape(-1, 3) for p in a["paths"]])
        x = torch.from_numpy(px).double() / 255
        mean = x.mean(0)
        cov = (x - mean).T @ (x - mean) / x.shape[0]
        vals, vecs = torch.linalg.eigh(cov)
        return {"mean": mean, "std": x.std(0, unbiased=False), "cov": cov, "eigval": vals.flip(0), "eigvec": vecs.flip(1)}
    if op == "save_pth":
        # torchvision's AlexNet with seeded weights, saved with real torch.save; its logits for t["x"].
        import torchvision
        torch.manual_seed(a["seed"])
        net = torchvision.models.alexnet().eval()
        obj = net.state_dict()
        if a.get("nested"):
            obj = {"epoch": 3, "state_dict": {"module." + k: v for k, v in obj.items()}}
        torch.save(obj, a["path"])
        with torch.no_grad():
            return {"y": net(t["x"])}
    if op == "read_safetensors":
        # PyTorch reads a safetensors file we wrote (the reader above: struct + json + torch.frombuffer).
        tensors, meta = read_safetensors(a["path"])
        out = {"k." + k: v for k, v in tensors.items()}
        out["meta_len"] = torch.tensor([len(meta)])
        return out
    if op == "onnx_check":
        import onnx
        model = onnx.load(a["path"])
        onnx.checker.check_model(model, full_check=True)
        return {"opset": torch.tensor([model.opset_import[0].version]), "nodes": torch.tensor([len(model.graph.node)])}
    if op == "hostile_pth":
        # A torch.save archive whose data.pkl asks for os.system: loading it must not run anything.
        import io, pickle, zipfile

        class Evil:
            def __reduce__(self):
                import os
                return (os.system, ("touch " + a["marker"],))

        torch.save({"w": torch.ones(2)}, a["path"] + ".tmp")
        with zipfile.ZipFile(a["path"] + ".tmp") as src, zipfile.ZipFile(a["path"], "w") as dst:
            for info in src.infolist():
                data = src.read(info.filename)
                if info.filename.endswith("data.pkl"):
                    data = pickle.dumps({"w": Evil()}, protocol=2)
                dst.writestr(info, data)
        return {"ok": torch.tensor([1])}
    if op.startswith("model_"):
        # args "runs": several computations on the same weights, each {"name", "dtype", "autocast",
        # "channels_last"}; outputs NAME.y, NAME.loss, NAME.grad.KEY. Without "runs": one float32 NCHW run.
        runs = a.get("runs")
        if runs is None:
            torch.manual_seed(0)
            return run_model(make_model(op, t), t, "", autocast=a.get("autocast"))
        out = {}
        for r in runs:
            torch.manual_seed(0)
            res = run_model(make_model(op, t), t, "", autocast=r.get("autocast"), dtype=r.get("dtype", "float32"),
                            channels_last=r.get("channels_last", False))
            out.update({r["name"] + "." + k: v for k, v in res.items()})
        return out
    for k, v in t.items():
        if v.is_floating_point() and k != "gy":
            v.requires_grad_(True)
    x = t.get("x")
    extra = {}
    if op == "conv2d":
        # In float64, handed back as float32: PyTorch 2.6 as Debian builds it computes wrong float32 input gradients
        # for some NCHW convolutions on AVX-512 CPUs (oneDNN; small channel counts); float64 is exact there.
        b = t.get("b")
        y = F.conv2d(x.double(), t["w"].double(), None if b is None else b.double(), stride=a["stride"],
                     padding=a["padding"], groups=a["groups"]).float()
    elif op == "linear":
        y = F.linear(x, t["w"], t.get("b"))
    elif op == "relu":
        y = F.relu(x)
    elif op == "maxpool":
        y = F.max_pool2d(x, a["k"], a["s"], a.get("p", 0), ceil_mode=a.get("ceil", False))
    elif op == "adaptiveavg":
        y = F.adaptive_avg_pool2d(x, a["size"])
    elif op == "batchnorm":
        rm, rv = t["rm"].detach().clone(), t["rv"].detach().clone()
        y = F.batch_norm(x, rm, rv, t["w"], t["b"], training=a["training"], momentum=a["momentum"], eps=a["eps"])
        extra = {"rm": rm, "rv": rv}
    elif op == "lrn_pytorch":
        y = F.local_response_norm(x, a["size"], alpha=a["alpha"], beta=a["beta"], k=a["k"])
    elif op == "lrn_tf":
        y = tf_lrn(x, a["depth_radius"], a["bias"], a["alpha"], a["beta"])
    elif op == "cross_entropy":
        y = F.cross_entropy(x, t["target"], label_smoothing=a.get("label_smoothing", 0.0)).reshape(1)
    elif op == "softmax":
        y = F.softmax(x, dim=a["dim"])
    elif op == "log_softmax":
        y = F.log_softmax(x, dim=a["dim"])
    elif op == "resize":
        y = F.interpolate(x, size=a["size"], mode="bilinear", align_corners=False, antialias=a.get("antialias", False))
    elif op == "sgd":
        # One or more torch.optim.SGD steps on a parameter with a fixed gradient sequence.
        w = t["w"].detach().clone().requires_grad_(True)
        opt = torch.optim.SGD([w], lr=a["lr"], momentum=a["momentum"], weight_decay=a["weight_decay"],
                              dampening=a.get("dampening", 0), nesterov=a.get("nesterov", False))
        for i in range(a["steps"]):
            w.grad = t["g%d" % i].clone()
            opt.step()
        return {"y": w.detach()}
    elif op == "adam":
        w = t["w"].detach().clone().requires_grad_(True)
        cls = torch.optim.AdamW if a.get("decoupled") else torch.optim.Adam
        opt = cls([w], lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"], weight_decay=a["weight_decay"])
        for i in range(a["steps"]):
            w.grad = t["g%d" % i].clone()
            opt.step()
        return {"y": w.detach()}
    else:
        raise ValueError("unknown op " + op)
    out = {"y": y}
    out.update(extra)
    if "gy" in t:
        y.backward(t["gy"])
        for k, v in t.items():
            if v.is_floating_point() and v.grad is not None:
                out["grad." + k] = v.grad
    return out


def main():
    tensors, meta = read_safetensors(sys.argv[1])
    torch.set_num_threads(int(meta.get("threads", "1")))
    results = {}
    for case in json.loads(meta["cases"]):
        cid = case["id"]
        mine = {k[len(cid) + 1:]: v for k, v in tensors.items() if k.startswith(cid + ".")}
        for k, v in run_case(case["op"], case.get("args", {}), mine).items():
            results[cid + "." + k] = v
    write_safetensors(sys.argv[2], results)


# ---- Transport for big cases: the same files as read_safetensors / write_safetensors, with fewer copies ----------
# Copies are what a full-size model's case costs (fresh memory is slow to fault in on the test machines: a 1 GB
# output written through write_safetensors took 37 s). The test helper (test/helpers/oracle.ts) runs main_mapped.


def read_safetensors_mapped(path):
    """read_safetensors over a private (copy-on-write) map of the file: tensors view the file's pages, uncopied.
    A tensor whose offset is not a multiple of its element size is copied (aligned), as are empty ones."""
    import mmap
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    (n,) = struct.unpack("<Q", mm[:8])
    header = json.loads(mm[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for k, e in header.items():
        dt = DT[e["dtype"]]
        b, end = e["data_offsets"]
        size = torch.empty(0, dtype=dt).element_size()
        if end == b:
            t = torch.empty(0, dtype=dt)
        elif (base + b) % size:
            t = torch.frombuffer(bytearray(mm[base + b: base + end]), dtype=dt)
        else:
            t = torch.frombuffer(mm, dtype=dt, count=(end - b) // size, offset=base + b)
        out[k] = t.reshape(e["shape"])
    return out, meta


def write_safetensors_streamed(path, tensors):
    """write_safetensors, each tensor's bytes written straight from its memory instead of joined first."""
    header, parts, off = {}, [], 0
    for k, t in tensors.items():
        t = t.detach().contiguous().cpu()
        n = t.numel() * t.element_size()
        header[k] = {"dtype": DT_NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + n]}
        parts.append(t.view(torch.int16) if t.dtype == torch.bfloat16 else t)
        off += n
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for t in parts:
            if t.numel():
                f.write(memoryview(t.reshape(-1).numpy()).cast("B"))


def rel_error(a, ref, metric):
    """tolerance.ts's relError in float64: 'max' is max|a - ref| / max|ref|, 'norm' is ||a - ref|| / ||ref||; a
    million elements at a time (converting whole full-size gradients to float64 took longer than the runs)."""
    a, ref = a.detach().reshape(-1), ref.detach().reshape(-1)
    num = den = 0.0
    for i in range(0, a.numel(), 1 << 20):
        r = ref[i:i + (1 << 20)].double()
        d = a[i:i + (1 << 20)].double() - r
        if metric == "max":
            num, den = max(num, float(d.abs().max())), max(den, float(r.abs().max()))
        else:
            num, den = num + float((d * d).sum()), den + float((r * r).sum())
    return num / max(1e-300, den) if metric == "max" else (num / max(1e-300, den)) ** 0.5


def peer_errors(results, cid, spec):
    """args "peer_errors": {"ref": RUN, "metric": "max" | "norm"}: every other run's tensors NAME.KEY are replaced by
    their relative error against RUN.KEY, NAME.err.KEY (a float64 scalar): what the tests' tolerances need of
    PyTorch's own float32 or bfloat16 runs, without shipping their gradients back."""
    ref = cid + "." + spec["ref"] + "."
    out = {}
    for k, v in results.items():
        run, _, key = k[len(cid) + 1:].partition(".")
        if k.startswith(ref) or not k.startswith(cid + ".") or (ref + key) not in results:
            out[k] = v
        else:
            out[cid + "." + run + ".err." + key] = torch.tensor([rel_error(v, results[ref + key], spec["metric"])],
                                                                dtype=torch.float64)
    return out


def main_mapped():
    """main with the mapped reader and the streamed writer; a case's args may ask for peer_errors."""
    tensors, meta = read_safetensors_mapped(sys.argv[1])
    torch.set_num_threads(int(meta.get("threads", "1")))
    results = {}
    for case in json.loads(meta["cases"]):
        cid = case["id"]
        mine = {k[len(cid) + 1:]: v for k, v in tensors.items() if k.startswith(cid + ".")}
        args = case.get("args", {})
        res = {cid + "." + k: v for k, v in run_case(case["op"], args, mine).items()}
        results.update(peer_errors(res, cid, args["peer_errors"]) if "peer_errors" in args else res)
    write_safetensors_streamed(sys.argv[2], results)


def onnx_check_lines():
    """The ONNX files named on stdin, one a line, each checked as it comes (op onnx_check): a JSON line per file on
    stdout, {"path", "opset", "nodes"} or {"path", "error"}. One process (one torch import) for every variant, and
    the test exports the next variant while this checks the last."""
    for line in sys.stdin:
        path = line.rstrip("\n")
        try:
            r = run_case("onnx_check", {"path": path}, {})
            answer = {"path": path, "opset": int(r["opset"][0]), "nodes": int(r["nodes"][0])}
        except Exception as e:  # the test reports the checker's complaint for that file
            answer = {"path": path, "error": "%s: %s" % (type(e).__name__, e)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
