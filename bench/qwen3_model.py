"""A Qwen3-shaped model written by transformers, and a peft adapter for it, for the benches.

usage: qwen3_model.py OUT LAYERS SHARD_SIZE
Writes OUT/base (Qwen3ForCausalLM, hidden 1024, intermediate 3072, 16 query / 8 key-value
heads of 128, vocab 151936, tied embeddings, BF16, seeded random weights, save_pretrained with
max_shard_size=SHARD_SIZE) and OUT/adapter (peft LoRA r=16, alpha 32, target_modules
all-linear, with random B so the merge changes every targeted weight). Prints one JSON line.
"""
import json
import os
import sys

import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen3Config, Qwen3ForCausalLM


def main():
    out, layers, shard = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=layers,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
    )
    model = Qwen3ForCausalLM(config).to(torch.bfloat16).eval()
    base = os.path.join(out, "base")
    model.save_pretrained(base, max_shard_size=shard)
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False))
    adapter = os.path.join(out, "adapter")
    peft_model.save_pretrained(adapter)
    size = lambda d: sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))
    print(json.dumps({"base_bytes": size(base), "adapter_bytes": size(adapter), "shards": sorted(n for n in os.listdir(base) if n.endswith(".safetensors"))}))


if __name__ == "__main__":
    main()
