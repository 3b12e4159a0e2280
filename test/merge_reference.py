#!/usr/bin/env python3
"""Independent torch reference for test/merge.test.ts.

    python3 test/merge_reference.py JOBS.json   ->  JSON results on stdout

It does not use mstore's merge code (neither src/merge nor workers/merge_lora.py): the test
describes each merge explicitly (which base tensor gets which factors, scale, transpose), and
this script computes the expected tensors with plain torch ops,
    expected = (W.float() + delta).to(W.dtype),  delta = (up @ down) * fp32(scale)  (transposed,
    reshaped for convolutions; DoRA: ((m / ||W + delta||_row) * (W + delta)).to(W.dtype);
    with roundDelta, as peft merges embedding LoRA: (W.float() + delta.to(W.dtype).float()).to(W.dtype)),
then compares output directories with it, and with each other, element by element in ulps of
the tensor's dtype. It also rounds given fp32 bit patterns to bf16/f16 with torch.

Job file: {"cases": [{"name", "base": [files], "ops": [...], "outs": [dirs]}],
           "pairs": [[dirA, dirB], ...], "round": [uint32 bit patterns]}
op: {"target", "src": {"file","key"}|null, "up"/"down"/"magnitude"/"vector": {"file","key"}|null,
     "transpose": bool, "roundDelta": bool, "scale": float}
"""
import json
import os
import struct
import sys

import torch

DT = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
INT = {"BF16": torch.int16, "F16": torch.int16, "F32": torch.int32}


def header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return 8 + n, h


def read(path, key=None):
    start, h = header(path)
    out = {}
    with open(path, "rb") as f:
        for name, t in h.items():
            if key is not None and name != key:
                continue
            b, e = t["data_offsets"]
            f.seek(start + b)
            buf = bytearray(f.read(e - b))
            out[name] = (t["dtype"], torch.frombuffer(buf, dtype=INT[t["dtype"]]).view(DT[t["dtype"]]).reshape(t["shape"]) if buf else torch.zeros(t["shape"], dtype=DT[t["dtype"]]))
    return out


def load(ref):
    return read(ref["file"], ref["key"])[ref["key"]][1]


def model(files):
    tensors = {}
    for f in files:
        tensors.update(read(f))
    return tensors


def weight_files(d):
    return sorted(n for n in os.listdir(d) if n.endswith(".safetensors"))


def ordered(bits, dtype):
    """Sign-magnitude bits -> integers in value order, so |a - b| counts ulps."""
    x = bits.to(torch.int64)
    if dtype == "F32":
        x = torch.where(x < 0, x + (1 << 32), x)
        sign, mag = x >= (1 << 31), x & 0x7FFFFFFF
    else:
        x = torch.where(x < 0, x + (1 << 16), x)
        sign, mag = x >= (1 << 15), x & 0x7FFF
    return torch.where(sign, -mag, mag)


def compare(a, b):
    """a, b: name -> (dtype, tensor). Same names, dtypes, shapes; ulp statistics."""
    problems = []
    if list(a) != list(b):
        problems.append("tensor names/order differ: %s vs %s" % (list(a)[:5], list(b)[:5]))
    n = same = 0
    max_ulp = 0
    worst = None
    for name, (dt, ta) in a.items():
        if name not in b:
            problems.append("missing " + name)
            continue
        db, tb = b[name]
        if dt != db or list(ta.shape) != list(tb.shape):
            problems.append("%s: %s %s vs %s %s" % (name, dt, list(ta.shape), db, list(tb.shape)))
            continue
        ia = ordered(ta.contiguous().view(INT[dt]).reshape(-1), dt)
        ib = ordered(tb.contiguous().view(INT[dt]).reshape(-1), dt)
        d = (ia - ib).abs()
        n += d.numel()
        same += int((d == 0).sum())
        m = int(d.max()) if d.numel() else 0
        if m > max_ulp:
            max_ulp, worst = m, name
    return {"problems": problems, "elements": n, "identical": same, "maxUlp": max_ulp, "worst": worst}


def expected(case):
    base = model(case["base"])
    for op in case["ops"]:
        name = op["target"]
        dtype, w = base[name]
        src = load(op["src"]) if op.get("src") else w
        x = src.float()
        scale = torch.tensor(op.get("scale", 1.0), dtype=torch.float32)
        if op.get("vector"):
            x = x + load(op["vector"]).float().reshape(x.shape) * scale
        elif op.get("up"):
            up = load(op["up"]).float()
            down = load(op["down"]).float()
            if op.get("transpose"):
                delta = (up @ down).t() * scale
            else:
                rows = x.shape[0]
                r = down.shape[0]
                delta = (up.reshape(rows, r) @ down.reshape(r, -1)) * scale
            if op.get("roundDelta"):
                delta = delta.to(src.dtype).float()  # peft's Embedding.merge: weight += delta.to(weight.dtype)
            s = x.reshape(delta.shape) + delta
            if op.get("magnitude"):
                m = load(op["magnitude"]).float().reshape(-1, 1)
                s = (m / torch.linalg.norm(s, dim=1).reshape(-1, 1)) * s
            x = s.reshape(w.shape)
        base[name] = (dtype, x.to(DT[dtype]))
    return base


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    result = {"cases": {}, "pairs": [], "round": None, "torch": torch.__version__}
    for case in jobs.get("cases", []):
        exp = expected(case)
        outs = []
        for d in case["outs"]:
            got = model([os.path.join(d, n) for n in weight_files(d)])
            outs.append(dict(compare(exp, got), dir=d))
        result["cases"][case["name"]] = outs
    for a, b in jobs.get("pairs", []):
        ta = model([os.path.join(a, n) for n in weight_files(a)])
        tb = model([os.path.join(b, n) for n in weight_files(b)])
        result["pairs"].append(dict(compare(ta, tb), a=a, b=b))
    if jobs.get("round"):
        bits = torch.tensor([b - (1 << 32) if b >= (1 << 31) else b for b in jobs["round"]], dtype=torch.int32)
        f = bits.view(torch.float32)
        result["round"] = {
            "bf16": [int(v) & 0xFFFF for v in f.to(torch.bfloat16).view(torch.int16).tolist()],
            "f16": [int(v) & 0xFFFF for v in f.to(torch.float16).view(torch.int16).tolist()],
        }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
