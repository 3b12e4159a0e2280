#!/usr/bin/env python3
"""The Hugging Face stack as mstore's tests drive it (test/hf-hub.test.ts): tiny seeded models
written by transformers, and huggingface_hub and transformers as clients of `mstore serve`
(HF_ENDPOINT and HF_TOKEN set by the test; nothing is fetched from the internet). Each
subcommand prints one JSON object on stdout.

    hf_stack.py make DIR SEED...   tiny Qwen3 causal LMs saved with save_pretrained; their greedy tokens
    hf_stack.py client REPO        snapshot_download of v001 and of `production`, and `hf download` of v001
                                   (each file's sha256);
                                   a download through MSTORE_TEST_CUT_ENDPOINT (a proxy that cuts the
                                   first one half-way); the errors for a missing file, revision, repo
                                   and a wrong or no token; from_pretrained(REPO, revision="production")
                                   and its greedy tokens
    hf_stack.py peft-make ROOT     bases (ROOT/base-qwen3 bf16 sharded, base-gpt2, base-gpt2_f32, base-conv) and, per supported
                                   adapter kind, peft's adapter and its merge_and_unload (ROOT/adapter-KIND, ROOT/peft-KIND)
    hf_stack.py peft-compare ROOT PREFIX...   ROOT/PREFIX-KIND against ROOT/peft-KIND: ulps per element, logits
"""
import hashlib
import json
import os
import sys
import tempfile

PROMPT = [[1, 5, 9, 13, 17]]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def greedy(model):
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor(PROMPT), max_new_tokens=12, do_sample=False, pad_token_id=0)
    return out[0].tolist()


def make(*dirs_and_seeds):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokens = []
    for out, seed in zip(dirs_and_seeds[::2], dirs_and_seeds[1::2]):
        torch.manual_seed(int(seed))
        config = Qwen3Config(
            vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=64, tie_word_embeddings=False,
        )
        model = Qwen3ForCausalLM(config).eval()
        model.save_pretrained(out, safe_serialization=True)
        tokens.append(greedy(model))
    return {"tokens": tokens}


def client(repo):
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError
    from transformers import AutoModelForCausalLM

    def files_of(d):
        out = {}
        for root, _, names in os.walk(d):
            for n in names:
                p = os.path.join(root, n)
                out[os.path.relpath(p, d)] = sha256(p)
        return out

    def attempt(**kw):
        try:
            with tempfile.TemporaryDirectory() as cache:  # nothing cached to fall back on
                hf_hub_download(cache_dir=cache, **kw)
            return {"raised": None}
        except HfHubHTTPError as e:
            r = e.response
            return {"raised": type(e).__name__, "status": r.status_code if r is not None else None,
                    "commit": r.headers.get("X-Repo-Commit") if r is not None else None}

    result = {
        "v001": files_of(snapshot_download(repo, revision="v001")),
        "production": files_of(snapshot_download(repo, revision="production")),
    }
    with tempfile.TemporaryDirectory() as d:  # the `hf` CLI beside this interpreter
        import subprocess

        hf = os.path.join(os.path.dirname(sys.executable), "hf")
        subprocess.run([hf, "download", repo, "--revision", "v001", "--local-dir", d], check=True, capture_output=True)
        result["cli"] = {k: v for k, v in files_of(d).items() if not k.startswith(".cache")}
    with tempfile.TemporaryDirectory() as cache:
        p = hf_hub_download(repo, "extra.bin", revision="v001", cache_dir=cache,
                            endpoint=os.environ["MSTORE_TEST_CUT_ENDPOINT"])
        result["resumed"] = sha256(p)
    result["errors"] = {
        "missing_file": attempt(repo_id=repo, filename="no-such-file.json", revision="v001"),
        "missing_revision": attempt(repo_id=repo, filename="config.json", revision="v999"),
        "missing_repo": attempt(repo_id="someone/else", filename="config.json", revision="v001"),
        "wrong_token": attempt(repo_id=repo, filename="config.json", revision="v001", token="not-a-valid-token"),
        "no_token": attempt(repo_id=repo, filename="config.json", revision="v001", token=False),
    }
    result["tokens"] = greedy(AutoModelForCausalLM.from_pretrained(repo, revision="production").eval())
    return result


def _tiny_qwen3(seed, dtype):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(int(seed))
    config = Qwen3Config(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=64, tie_word_embeddings=False,
    )
    return Qwen3ForCausalLM(config).to(dtype).eval()


class TinyConv:
    """A small conv net (3×3 and 1×1 convolutions, a linear head), as diffusers-like bases have."""

    @staticmethod
    def build():
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv_in = nn.Conv2d(4, 16, 3, padding=1)
                self.conv_mid = nn.Conv2d(16, 16, 1)
                self.proj = nn.Linear(16, 8)

            def forward(self, x):
                return self.proj(self.conv_mid(self.conv_in(x)).mean(dim=(2, 3)))

        return Net()


def _base(kind, dtype):
    import torch

    torch.manual_seed(11)
    if kind == "qwen3":
        return _tiny_qwen3(11, dtype)
    if kind in ("gpt2", "gpt2_f32"):
        from transformers import GPT2Config, GPT2LMHeadModel

        model = GPT2LMHeadModel(GPT2Config(vocab_size=96, n_positions=64, n_embd=32, n_layer=2, n_head=4))
        return model.to(torch.float32 if kind == "gpt2_f32" else dtype).eval()
    return TinyConv.build().to(dtype).eval()


def _save(model, kind, d, **kw):
    if kind == "conv":
        from safetensors.torch import save_file

        os.makedirs(d, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(d, "model.safetensors"))
    else:
        model.save_pretrained(d, **kw)


# Adapter kinds docs/merge.md lists as supported, each as peft writes it: (base, LoraConfig arguments).
PEFT_CASES = {
    "linear_embedding": ("qwen3", dict(r=4, lora_alpha=8, target_modules=["embed_tokens", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])),
    "rslora_patterns_modules_to_save": ("qwen3", dict(r=4, lora_alpha=16, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"],
                                                      rank_pattern={"down_proj": 2}, alpha_pattern={"v_proj": 4}, modules_to_save=["lm_head"])),
    "dora": ("qwen3", dict(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj", "v_proj"])),
    "all_linear": ("qwen3", dict(r=8, lora_alpha=16, target_modules="all-linear")),
    "fan_in_fan_out_lora_bias": ("gpt2", dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True, lora_bias=True)),
    # F32 weights show the sum's own rounding (bf16 hides most of it): peft's torch sums with FMA
    "f32_rank16": ("gpt2_f32", dict(r=16, lora_alpha=16, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)),
    "conv": ("conv", dict(r=4, lora_alpha=8, target_modules=["conv_in", "conv_mid", "proj"])),
}


def peft_make(root):
    """Bases (bf16, the Qwen3 one sharded; one F32 GPT-2), and per case an adapter (random, not zero, B) and peft's merge_and_unload of it."""
    import torch
    from peft import LoraConfig, get_peft_model

    for kind in sorted({k for k, _ in PEFT_CASES.values()}):
        _save(_base(kind, torch.bfloat16), kind, os.path.join(root, "base-" + kind), max_shard_size="20KB")  # sharded, with its index
    for i, (name, (kind, kw)) in enumerate(PEFT_CASES.items()):
        model = _base(kind, torch.bfloat16)
        torch.manual_seed(100 + i)
        pm = get_peft_model(model, LoraConfig(init_lora_weights=False, **kw))
        with torch.no_grad():  # trained, not initial: a modules_to_save copy, lora_bias
            for n, p in pm.named_parameters():
                if "modules_to_save" in n or (n.endswith(".bias") and "lora_B" in n):
                    p.add_(torch.randn_like(p) * 0.05)
        pm.save_pretrained(os.path.join(root, "adapter-" + name))
        _save(pm.merge_and_unload(), kind, os.path.join(root, "peft-" + name))
    return {"cases": {name: kind for name, (kind, _) in PEFT_CASES.items()}}


def peft_compare(root, *prefixes):
    """ROOT/PREFIX-KIND against peft's, per prefix and case: elements within 1 ulp, the worst tensor, the logits."""
    return {p: _compare(root, p) for p in prefixes}


def _compare(root, prefix):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    def tensors(d):  # every shard
        out = {}
        for n in sorted(os.listdir(d)):
            if n.endswith(".safetensors"):
                out.update(load_file(os.path.join(d, n)))
        return out

    out = {}
    for name in PEFT_CASES:
        theirs = tensors(os.path.join(root, "peft-" + name))
        ours = tensors(os.path.join(root, prefix + "-" + name))
        n = within = 0
        worst, worst_ulp = None, 0
        for k, t in theirs.items():
            o = ours[k]
            # the bits as an ordered integer line (negative values mirrored): ulp distance is the difference
            bits, low = (torch.int32, -2**31) if t.dtype == torch.float32 else (torch.int16, -2**15)
            a = t.contiguous().view(bits).to(torch.int64)
            b = o.contiguous().view(bits).to(torch.int64)
            a = torch.where(a < 0, low - a, a)
            b = torch.where(b < 0, low - b, b)
            d = (a - b).abs()
            n += d.numel()
            within += int((d <= 1).sum())
            m = int(d.max()) if d.numel() else 0
            if m > worst_ulp:
                worst, worst_ulp = k, m
        kind = PEFT_CASES[name][0]
        with torch.no_grad():
            if kind == "conv":  # the merged weights in the net itself
                x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
                outs = []
                for sd in (theirs, ours):
                    net = TinyConv.build().to(torch.bfloat16).eval()
                    net.load_state_dict(sd)
                    outs.append(net(x).float())
                lt, lo = outs
            else:  # transformers loads the directory
                prompt = torch.tensor([[1, 5, 9, 13, 17]])
                lt = AutoModelForCausalLM.from_pretrained(os.path.join(root, "peft-" + name)).eval()(prompt).logits.float()
                lo = AutoModelForCausalLM.from_pretrained(os.path.join(root, prefix + "-" + name)).eval()(prompt).logits.float()
        out[name] = {"elements": n, "within1ulp": within, "worst": worst, "worstUlp": worst_ulp,
                     "tensors": sorted(theirs) == sorted(ours), "logitsMaxAbs": float((lt - lo).abs().max()),
                     "logitsScale": float(lt.abs().max())}
    return out


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    print(json.dumps({"make": make, "client": client, "peft-make": peft_make, "peft-compare": peft_compare}[cmd](*args)))


if __name__ == "__main__":
    main()
