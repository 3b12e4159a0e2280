#!/usr/bin/env python3
"""mstore's torch merge worker: the same contract and the same maths as `mstore merge-lora`
(src/merge/, docs/merge.md), on CUDA when a GPU is visible, else on the CPU.

    python3 workers/merge_lora.py --base DIR --adapter DIR_OR_FILE --out DIR [--device auto|cpu|cuda] [--json]

Maths: delta = fp32(up @ down) * fp32(scale) (transposed for fan_in_fan_out and embeddings),
W' = (W.float() + delta).to(W.dtype): one rounding to the weight's dtype; for embedding LoRA, as peft's
Embedding.merge does, W' = (W.float() + delta.to(W.dtype).float()).to(W.dtype). DoRA:
W' = ((m / ||W + delta||_row) * (W + delta)).to(W.dtype). TF32 is off, so CUDA results differ from
the CPU only by the fp32 summation order.

safetensors is read and written here (8-byte little-endian header length, JSON header, raw
little-endian data), without the `safetensors` package: the output keeps the base's header bytes,
so tensor names, order, shapes, dtypes and __metadata__ are the base's.
Exit status: 0 merged, 1 failure (one line on stderr naming the tensor or file), 2 usage.
"""
import argparse
import json
import math
import os
import re
import shutil
import struct
import sys
import time

try:
    import torch
except ImportError:  # pragma: no cover - reported as a failure of the worker
    sys.stderr.write("merge_lora: error: torch is not installed for %s\n" % sys.executable)
    sys.exit(1)

PREFIX = "base_model.model."
INDEX_NAME = "model.safetensors.index.json"
DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
SIZES = {"BF16": 2, "F16": 2, "F32": 4}
RAW = {2: torch.int16, 4: torch.int32}
STALE = re.compile(r"^(pytorch_model.*\.bin|pytorch_model\.bin\.index\.json|tf_model\.h5|flax_model\.msgpack|.*\.(pt|pth|ckpt|gguf))$")
EMBED = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|embed_in)\.weight$")
UNSUPPORTED = re.compile(r"(^|\.)(lora_E|hada_|lokr_|ia3_|vera_|oft_|boft_|trainable_tokens)")
KOHYA = re.compile(r"^(lora_(?:unet|te\d*|transformer))_(.+?)\.(lora_down\.weight|lora_up\.weight|alpha)$")


class MergeError(Exception):
    pass


# ---------------------------------------------------------------- safetensors


class StFile:
    def __init__(self, path):
        self.path = path
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise MergeError("%s: not a valid safetensors file: shorter than 8 bytes" % path)
                (n,) = struct.unpack("<Q", head)
                if n > 100_000_000 or 8 + n > size:
                    raise MergeError("%s: not a valid safetensors file: bad header length %d" % (path, n))
                self.header_json = f.read(n)
        except OSError as e:
            raise MergeError("cannot read %s: %s" % (path, e))
        try:
            header = json.loads(self.header_json.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise MergeError("%s: not a valid safetensors file: %s" % (path, e))
        self.data_start = 8 + n
        self.metadata = header.pop("__metadata__", None)
        self.tensors = {}
        end = 0
        for name, t in header.items():
            self.tensors[name] = (t["dtype"], list(t["shape"]), t["data_offsets"][0], t["data_offsets"][1])
            end = max(end, t["data_offsets"][1])
        if self.data_start + end != size:
            raise MergeError("%s: not a valid safetensors file: tensors cover %d bytes of %d" % (path, end, size - self.data_start))

    def by_offset(self):
        return sorted(self.tensors.items(), key=lambda kv: kv[1][2])

    def raw(self, name):
        dtype, shape, b, e = self.tensors[name]
        with open(self.path, "rb") as f:
            f.seek(self.data_start + b)
            return f.read(e - b)

    def load(self, name, device="cpu"):
        """The tensor in its own dtype."""
        dtype, shape, b, e = self.tensors[name]
        if dtype not in DTYPES:
            raise MergeError("tensor %s in %s has dtype %s; the merge computes with BF16, F16 and F32 only" % (name, os.path.basename(self.path), dtype))
        buf = bytearray(self.raw(name))
        if not buf:
            return torch.zeros(shape, dtype=DTYPES[dtype], device=device)
        t = torch.frombuffer(buf, dtype=RAW[SIZES[dtype]]).view(DTYPES[dtype]).reshape(shape)
        return t.to(device)


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    size = t.element_size()
    return t.view(RAW[size]).numpy().tobytes()


# ---------------------------------------------------------------- base model


class Base:
    def __init__(self, d):
        self.dir = d
        try:
            names = sorted(os.listdir(d))
        except OSError as e:
            raise MergeError("cannot read base model directory %s: %s" % (d, e))
        self.files = []
        self.index = None
        if INDEX_NAME in names:
            self.index = INDEX_NAME
            with open(os.path.join(d, INDEX_NAME)) as f:
                wm = json.load(f).get("weight_map")
            if not isinstance(wm, dict):
                raise MergeError("%s: weight_map is not an object of tensor -> file" % os.path.join(d, INDEX_NAME))
            for shard in dict.fromkeys(wm.values()):
                if not os.path.isfile(os.path.join(d, shard)):
                    raise MergeError("%s names shard %s, which is not in %s" % (INDEX_NAME, shard, d))
                self.files.append(StFile(os.path.join(d, shard)))
        else:
            st = [n for n in names if n.endswith(".safetensors")]
            pick = ["model.safetensors"] if "model.safetensors" in st else st
            if not pick:
                raise MergeError("base model directory %s holds no .safetensors file" % d)
            if len(pick) > 1:
                raise MergeError("base model directory %s holds %d .safetensors files and no %s: which one is the model?" % (d, len(pick), INDEX_NAME))
            self.files.append(StFile(os.path.join(d, pick[0])))
        self.tensors = {}
        for f in self.files:
            for name in f.tensors:
                if name in self.tensors:
                    raise MergeError("tensor %s is in two shards" % name)
                self.tensors[name] = f


# ---------------------------------------------------------------- adapter plans
# An op: {"target", "keys", "replace": (file, name) | None, "delta": None | {...}}
# lowrank delta: {"kind": "lowrank", "up": (file, name), "down": (file, name), "transpose", "rank", "alpha", "scale", "magnitude"}
# vector delta: {"kind": "vector", "vector": (file, name), "scale"}


def pattern_value(pattern, module):
    for k, v in pattern.items():
        if re.match(r"(.*\.)?(%s)$" % k, module):
            return v
    return None


def add_op(ops, op):
    seen = ops.get(op["target"])
    if seen is None:
        ops[op["target"]] = op
        return
    if (seen["replace"] and not seen["delta"] and op["delta"] and not op["replace"]) or (seen["delta"] and not seen["replace"] and op["replace"] and not op["delta"]):
        ops[op["target"]] = {"target": op["target"], "keys": seen["keys"] + op["keys"], "replace": seen["replace"] or op["replace"], "delta": seen["delta"] or op["delta"]}
        return
    raise MergeError("adapter tensors %s and %s both target %s" % (", ".join(seen["keys"]), ", ".join(op["keys"]), op["target"]))


def no_target(key, target):
    hint = "; it ties lm_head to the input embedding (tie_word_embeddings)" if target == "lm_head.weight" else ""
    raise MergeError("adapter key %s lands on no base tensor (the base has no %s%s)" % (key, target, hint))


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def matrix(shape):
    rows = shape[0] if shape else 1
    return rows, (numel(shape) // rows if rows else 0)


def check_op(op, base):
    f = base.tensors[op["target"]]
    w = f.tensors[op["target"]][1]

    def fail(what):
        raise MergeError("shape mismatch for %s: base %s, %s" % (op["target"], w, what))

    if op["replace"]:
        rf, rn = op["replace"]
        if rf.tensors[rn][1] != w:
            fail("adapter %s %s" % (rn, rf.tensors[rn][1]))
    d = op["delta"]
    if not d:
        return
    rows, cols = matrix(w)
    if d["kind"] == "vector":
        vf, vn = d["vector"]
        if numel(vf.tensors[vn][1]) != numel(w):
            fail("adapter %s %s" % (vn, vf.tensors[vn][1]))
        return
    up = d["up"][0].tensors[d["up"][1]][1]
    down = d["down"][0].tensors[d["down"][1]][1]
    desc = "adapter %s %s @ %s %s%s" % (d["up"][1], up, d["down"][1], down, ", transposed" if d["transpose"] else "")
    r = d["rank"]
    if len(up) < 2 or len(down) < 2 or up[1] != r or down[0] != r:
        fail("%s (rank %d)" % (desc, r))
    if d["transpose"]:
        if len(w) != 2 or len(up) != 2 or len(down) != 2 or down[1] != rows or up[0] != cols:
            fail(desc)
    else:
        if up[0] != rows or any(x != 1 for x in up[2:]) or numel(down) // r != cols:
            fail(desc)
        if len(w) > 2 and len(down) > 2 and down[1:] != w[1:]:
            fail(desc)
        if len(w) > 2 and len(down) == 2 and any(x != 1 for x in w[2:]):
            fail(desc)
        if len(w) == 2 and len(down) > 2 and any(x != 1 for x in down[2:]):
            fail(desc)
    if d["magnitude"] is not None:
        mf, mn = d["magnitude"]
        if numel(mf.tensors[mn][1]) != rows:
            fail("DoRA magnitude %s %s" % (mn, mf.tensors[mn][1]))


def plan_peft(adir, base):
    cfg_file = os.path.join(adir, "adapter_config.json")
    try:
        with open(cfg_file) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise MergeError("%s: %s" % (cfg_file, e))
    if cfg.get("peft_type", "LORA") != "LORA":
        raise MergeError("%s: peft_type %s is not supported (LORA only)" % (cfg_file, cfg.get("peft_type")))
    for key in ("layer_replication", "trainable_token_indices"):
        if cfg.get(key) is not None:
            raise MergeError("%s: %s is not supported by the merge" % (cfg_file, key))
    if cfg.get("use_alora"):
        raise MergeError("%s: aLoRA (use_alora) adapters cannot be merged" % cfg_file)
    r_default = cfg.get("r", 8)
    alpha_default = cfg.get("lora_alpha", 8)
    rslora = cfg.get("use_rslora") is True
    fifo = cfg.get("fan_in_fan_out") is True
    use_dora = cfg.get("use_dora") is True
    bias = cfg.get("bias", "none") or "none"
    lora_bias = cfg.get("lora_bias") is True
    mts = cfg.get("modules_to_save") or []
    rank_pattern = cfg.get("rank_pattern") or {}
    alpha_pattern = cfg.get("alpha_pattern") or {}
    wfile = os.path.join(adir, "adapter_model.safetensors")
    if not os.path.isfile(wfile):
        if os.path.isfile(os.path.join(adir, "adapter_model.bin")):
            raise MergeError("%s holds adapter_model.bin (pickle): only adapter_model.safetensors is supported" % adir)
        raise MergeError("%s has no adapter_model.safetensors" % adir)
    st = StFile(wfile)
    modules = {}
    ops = {}
    for key, _ in st.by_offset():
        ref = (st, key)
        k = key[len(PREFIX):] if key.startswith(PREFIX) else key
        m = re.match(r"^(.+)\.lora_([AB])(?:\.[^.]+)?\.weight$", k)
        if m:
            modules.setdefault(m.group(1), {})[m.group(2)] = ref
            continue
        m = re.match(r"^(.+)\.lora_B(?:\.[^.]+)?\.bias$", k)
        if m:
            modules.setdefault(m.group(1), {})["bias"] = ref
            continue
        m = re.match(r"^(.+)\.lora_embedding_([AB])(?:\.[^.]+)?$", k)
        if m:
            modules.setdefault(m.group(1), {})["emb" + m.group(2)] = ref
            continue
        m = re.match(r"^(.+)\.lora_magnitude_vector(?:\.[^.]+)?(?:\.weight)?$", k)
        if m:
            modules.setdefault(m.group(1), {})["mag"] = ref
            continue
        if UNSUPPORTED.search(k) or re.search(r"(^|\.)lora_", k):
            raise MergeError("adapter key %s is not a LoRA weight the merge understands (LoRA, embedding LoRA, DoRA only)" % key)
        m = re.match(r"^(.+)\.base_layer\.([^.]+)$", k)
        if m:
            target = "%s.%s" % (m.group(1), m.group(2))
            if target not in base.tensors:
                no_target(key, target)
            add_op(ops, {"target": target, "keys": [key], "replace": ref, "delta": None})
            continue
        target = re.sub(r"\.modules_to_save\.[^.]+\.", ".", k, count=1)
        module = target.rsplit(".", 1)[0] if "." in target else target
        saved = any(module == s or module.endswith("." + s) for s in mts)
        trained_bias = target.endswith(".bias") and bias != "none"
        if not saved and not trained_bias:
            raise MergeError("adapter key %s is not a LoRA weight and its module is not in modules_to_save" % key)
        if target not in base.tensors:
            no_target(key, target)
        add_op(ops, {"target": target, "keys": [key], "replace": ref, "delta": None})
    for name, e in modules.items():
        keys = [e[x][1] for x in ("A", "B", "embA", "embB", "bias", "mag") if x in e]
        rank = pattern_value(rank_pattern, name)
        rank = r_default if rank is None else rank
        alpha = pattern_value(alpha_pattern, name)
        alpha = alpha_default if alpha is None else alpha
        scale = alpha / math.sqrt(rank) if rslora else alpha / rank
        embedding = "embA" in e or "embB" in e
        if embedding and ("A" in e or "B" in e):
            raise MergeError("module %s has both lora_A/lora_B and lora_embedding_A/B" % name)
        down = e.get("embA" if embedding else "A")
        up = e.get("embB" if embedding else "B")
        if down is None or up is None:
            raise MergeError("module %s lacks %s (%s)" % (name, "its A or B factor", keys[0]))
        actual = down[0].tensors[down[1]][1][0]
        if actual != rank:
            raise MergeError("rank mismatch for module %s: %s has rank %d but adapter_config.json says %d" % (name, down[1], actual, rank))
        mag = e.get("mag")
        if mag is not None and not use_dora:
            raise MergeError("adapter key %s is a DoRA magnitude but use_dora is not set" % mag[1])
        if use_dora and mag is None:
            raise MergeError("use_dora is set but module %s has no lora_magnitude_vector" % name)
        if mag is not None and (embedding or fifo):
            raise MergeError("DoRA is not supported for %s module %s" % ("embedding" if embedding else "fan_in_fan_out", name))
        target = name + ".weight"
        if target not in base.tensors:
            no_target(keys[0], target)
        if mag is not None and len(base.tensors[target].tensors[target][1]) != 2:
            raise MergeError("DoRA is not supported for conv module %s (%s)" % (name, target))
        add_op(ops, {"target": target, "keys": [k for k in keys if "bias" not in e or k != e["bias"][1]], "replace": None,
                     "delta": {"kind": "lowrank", "up": up, "down": down, "transpose": embedding or fifo, "rank": rank, "alpha": alpha, "scale": scale, "magnitude": mag,
                               "round_delta": embedding}})
        if "bias" in e:
            if not lora_bias:
                raise MergeError("adapter key %s is a lora_B bias but lora_bias is not set" % e["bias"][1])
            bt = name + ".bias"
            if bt not in base.tensors:
                no_target(e["bias"][1], bt)
            add_op(ops, {"target": bt, "keys": [e["bias"][1]], "replace": None, "delta": {"kind": "vector", "vector": e["bias"], "scale": scale}})
    for op in ops.values():
        check_op(op, base)
    return "peft", [wfile], ops


def plan_kohya(path, base):
    st = StFile(path)
    modules = {}
    for key, _ in st.by_offset():
        m = KOHYA.match(key)
        if not m:
            if key.endswith(".dora_scale"):
                raise MergeError("adapter key %s: DoRA is not supported for kohya adapters" % key)
            if re.search(r"(hada_|lokr_|lora_mid)", key):
                raise MergeError("adapter key %s: LyCORIS (LoHa/LoKr/Tucker) weights are not supported" % key)
            raise MergeError("adapter key %s is not a kohya LoRA key (lora_unet_/lora_te_... .lora_down/.lora_up/.alpha)" % key)
        e = modules.setdefault("%s_%s" % (m.group(1), m.group(2)), {"prefix": m.group(1), "name": m.group(2)})
        e[{"alpha": "alpha", "lora_up.weight": "up", "lora_down.weight": "down"}[m.group(3)]] = key
    idx = {}
    for name in base.tensors:
        if name.endswith(".weight"):
            module = name[: -len(".weight")]
            idx.setdefault(module.replace(".", "_"), []).append(module)
    ops = {}
    for mid, e in modules.items():
        any_key = e.get("down") or e.get("up") or e.get("alpha")
        if "down" not in e or "up" not in e:
            raise MergeError("module %s lacks lora_down or lora_up (%s)" % (mid, any_key))
        found = list(idx.get(e["name"], []))
        if not found:
            for u, mods in idx.items():
                if u.endswith("_" + e["name"]):
                    found += mods
        if not found:
            raise MergeError("adapter key %s lands on no base tensor (no base module is named like %s)" % (any_key, e["name"]))
        if len(found) > 1:
            raise MergeError("adapter key %s is ambiguous: base modules %s all read as %s" % (any_key, ", ".join(found[:4]), e["name"]))
        rank = st.tensors[e["down"]][1][0]
        alpha = float(rank)
        if "alpha" in e:
            a = st.load(e["alpha"]).float().reshape(-1)
            if a.numel() != 1:
                raise MergeError("adapter key %s is not a scalar" % e["alpha"])
            a = float(a[0])
            if not math.isfinite(a):
                raise MergeError("adapter key %s is not finite" % e["alpha"])
            if a != 0:
                alpha = a
        target = found[0] + ".weight"
        op = {"target": target, "keys": [e[x] for x in ("down", "up", "alpha") if x in e], "replace": None,
              "delta": {"kind": "lowrank", "up": (st, e["up"]), "down": (st, e["down"]), "transpose": False, "rank": rank, "alpha": alpha, "scale": alpha / rank, "magnitude": None}}
        check_op(op, base)
        add_op(ops, op)
    return "kohya", [path], ops


def plan_adapter(adapter, base):
    if not os.path.exists(adapter):
        raise MergeError("adapter %s does not exist" % adapter)
    path = adapter
    if os.path.isdir(adapter):
        names = os.listdir(adapter)
        if "adapter_config.json" in names:
            return plan_peft(adapter, base)
        sts = [n for n in names if n.endswith(".safetensors")]
        if len(sts) != 1:
            raise MergeError("adapter directory %s has no adapter_config.json and %d .safetensors files (a kohya LoRA is one file)" % (adapter, len(sts)))
        path = os.path.join(adapter, sts[0])
    st = StFile(path)
    if not st.tensors or not all(re.match(r"^lora_(unet|te\d*|transformer)_", k) for k in st.tensors):
        raise MergeError("%s is not a kohya LoRA (lora_unet_/lora_te_ keys); a PEFT adapter is a directory with adapter_config.json" % path)
    return plan_kohya(path, base)


# ---------------------------------------------------------------- merge


def describe(op):
    """The report of one op, as the TS worker's MergedTensor."""
    d = op["delta"]
    out = {"target": op["target"], "keys": op["keys"]}
    if d is None:
        out["kind"] = "replace"
    elif d["kind"] == "vector":
        out.update(kind="bias", scale=d["scale"])
    else:
        kind = "dora" if d["magnitude"] is not None else "embedding" if "lora_embedding_" in d["down"][1] else "lora"
        out.update(kind=("replace+" + kind) if op["replace"] else kind, rank=d["rank"], alpha=d["alpha"], scale=d["scale"])
    return out


def merged_tensor(op, base, dev):
    target = op["target"]
    bf = base.tensors[target]
    bdtype, shape = bf.tensors[target][0], bf.tensors[target][1]
    if bdtype not in DTYPES:
        raise MergeError("tensor %s in %s has dtype %s; the merge computes with BF16, F16 and F32 only" % (target, os.path.basename(bf.path), bdtype))
    src = op["replace"][0].load(op["replace"][1], dev) if op["replace"] else bf.load(target, dev)
    w = src.float()
    d = op["delta"]
    if d is None:
        out = w.to(DTYPES[bdtype])
    elif d["kind"] == "vector":
        v = d["vector"][0].load(d["vector"][1], dev).float().reshape(w.shape)
        out = (w + v * torch.tensor(d["scale"], dtype=torch.float32, device=dev)).to(DTYPES[bdtype])
    else:
        rows, cols = matrix(shape)
        r = d["rank"]
        up = d["up"][0].load(d["up"][1], dev).float()
        down = d["down"][0].load(d["down"][1], dev).float()
        scale = torch.tensor(d["scale"], dtype=torch.float32, device=dev)
        if d["transpose"]:
            delta = (up @ down).t() * scale
        else:
            delta = (up.reshape(rows, r) @ down.reshape(r, cols)) * scale
        if d.get("round_delta"):
            # peft's Embedding.merge adds delta.to(weight.dtype): a second rounding (its Linear adds fp32)
            delta = delta.to(src.dtype).float()
        s = w.reshape(rows, cols) + delta
        if d["magnitude"] is not None:
            m = d["magnitude"][0].load(d["magnitude"][1], dev).float().reshape(rows, 1)
            norm = torch.linalg.norm(s, dim=1).reshape(rows, 1)
            s = (m / norm) * s
        out = s.reshape(shape).to(DTYPES[bdtype])
    if not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        raise MergeError("merged tensor %s has NaN/Inf values (%d; from %s)" % (target, bad, ", ".join(op["keys"])))
    return out


def write_weights(f, out_path, ops, base, dev, progress):
    n = len(f.header_json)
    pad = (8 - n % 8) % 8
    with open(f.path, "rb") as fin, open(out_path, "xb") as fout:
        fout.write(struct.pack("<Q", n + pad))
        fout.write(f.header_json + b" " * pad)
        for name, (dtype, shape, b, e) in f.by_offset():
            op = ops.get(name)
            if op is None:
                fin.seek(f.data_start + b)
                left = e - b
                while left:
                    piece = fin.read(min(left, 16 << 20))
                    if not piece:
                        raise MergeError("%s: file ended early" % f.path)
                    fout.write(piece)
                    left -= len(piece)
            else:
                data = tensor_bytes(merged_tensor(op, base, dev))
                if len(data) != e - b:
                    raise MergeError("internal error: %s came out with %d bytes, not %d" % (name, len(data), e - b))
                fout.write(data)
            progress(name)
        fout.flush()
        os.fsync(fout.fileno())


def adjust_config(text, base, ops, changes):
    try:
        cfg = json.loads(text)
    except ValueError:
        return None
    if not isinstance(cfg, dict):
        return None
    embed = next((n for n in base.tensors if EMBED.search(n)), None)
    head = "lm_head.weight" if "lm_head.weight" in base.tensors else None
    touched = (embed and embed in ops) or (head and head in ops)
    if embed and head and touched and cfg.get("tie_word_embeddings") is not False:
        before = "unset (transformers default: true)" if "tie_word_embeddings" not in cfg else json.dumps(cfg["tie_word_embeddings"])
        cfg["tie_word_embeddings"] = False
        changes.append("tie_word_embeddings: %s -> false (the adapter changes %s; the base stores both)" % (before, embed if embed in ops else head))
        return json.dumps(cfg, indent=2) + "\n"
    return None


def copy_others(base, out, ops, result):
    weights = {os.path.basename(f.path) for f in base.files}
    for root, dirs, files in os.walk(base.dir):
        rel = os.path.relpath(root, base.dir)
        if rel == ".":
            rel = ""
            dirs[:] = [d for d in dirs if d not in (".mstore", ".git")]
        for d in sorted(dirs):
            p = os.path.join(root, d)
            if os.path.islink(p):
                os.symlink(os.readlink(p), os.path.join(out, rel, d))
                result["copied"].append(os.path.join(rel, d))
            else:
                os.mkdir(os.path.join(out, rel, d))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in sorted(files):
            r = os.path.join(rel, name) if rel else name
            src = os.path.join(root, name)
            if not rel and name in weights:
                continue
            if os.path.islink(src):
                os.symlink(os.readlink(src), os.path.join(out, r))
                result["copied"].append(r)
                continue
            if STALE.match(name):
                result["skipped"].append(r)
                continue
            changed = None
            if r == "config.json":
                with open(src, encoding="utf-8") as fh:
                    changed = adjust_config(fh.read(), base, ops, result["configChanges"])
            if changed is not None:
                with open(os.path.join(out, r), "w", encoding="utf-8") as fh:
                    fh.write(changed)
                    fh.flush()
                    os.fsync(fh.fileno())
            else:
                shutil.copyfile(src, os.path.join(out, r))
            result["copied"].append(r)


def merge(base_dir, adapter, out, device="auto", progress=None):
    started = time.time()
    if sys.byteorder != "little":
        raise MergeError("the merge worker needs a little-endian machine (safetensors is little-endian)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(device)
    base = Base(base_dir)
    fmt, files, ops = plan_adapter(adapter, base)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise MergeError("output directory %s is not empty" % out)
    created = not os.path.exists(out)
    if created:
        os.mkdir(out)
    result = {"format": fmt, "adapterFiles": files, "weightFiles": [os.path.basename(f.path) for f in base.files], "index": base.index,
              "copied": [], "skipped": [], "configChanges": [], "tensors": len(base.tensors), "merged": [describe(op) for op in ops.values()], "device": str(dev),
              "torch": torch.__version__, "seconds": 0.0}
    total = len(base.tensors)
    done = [0]

    def tick(name):
        done[0] += 1
        if progress:
            progress(done[0], total, name)

    try:
        for f in base.files:
            write_weights(f, os.path.join(out, os.path.basename(f.path)), ops, base, dev, tick)
        copy_others(base, out, ops, result)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for n in os.listdir(out):
                p = os.path.join(out, n)
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
        raise
    result["seconds"] = time.time() - started
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(prog="merge_lora.py", description="Merge a LoRA adapter (PEFT or kohya) into its base model with torch.")
    ap.add_argument("--base", required=True, help="base model directory (model.safetensors, or shards + model.safetensors.index.json)")
    ap.add_argument("--adapter", required=True, help="PEFT adapter directory, or a kohya LoRA .safetensors file or directory")
    ap.add_argument("--out", required=True, help="output directory (created; must not exist or be empty)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when visible, else CPU")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    a = ap.parse_args(argv)
    tty = sys.stderr.isatty()

    def progress(done, total, name):
        if tty:
            sys.stderr.write("\rmerge %d/%d tensors %s\x1b[K" % (done, total, name[:60]))
            if done == total:
                sys.stderr.write("\n")

    try:
        r = merge(a.base, a.adapter, a.out, a.device, progress)
    except MergeError as e:
        sys.stderr.write("merge_lora: error: %s\n" % e)
        return 1
    except (OSError, RuntimeError) as e:
        sys.stderr.write("merge_lora: error: %s\n" % str(e).splitlines()[0])
        return 1
    if a.json:
        sys.stdout.write(json.dumps(r, indent=2) + "\n")
    else:
        sys.stdout.write("merged %d of %d tensors (%s adapter) on %s in %.2f s -> %s\n" % (len(r["merged"]), r["tensors"], r["format"], r["device"], r["seconds"], a.out))
        for c in r["configChanges"]:
            sys.stdout.write("config.json: %s\n" % c)
    return 0


if __name__ == "__main__":
    sys.exit(main())
