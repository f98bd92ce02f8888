"""Causal attention on CPU: SDPA's fused kernel against genforge's two-matmul attention.

    python benchmarks/gpt_attention.py --threads 2

Part 1 times one attention call (forward + backward, 4,096 tokens per batch, 6 heads of 32) for
each context length, dtype and implementation. Part 2 times whole training steps (forward,
backward, gradient clipping, Muon + AdamW) of the `fast` and `quality` preset shapes with each
implementation (`--model.attention=sdpa` or `matmul`), interleaved, so the ratio is measured
side by side.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from genforge.families.gpt import param_groups
from genforge.models.gpt import GPT, GPTConfig, matmul_attention, use_matmul_attention
from genforge.trainer import TrainConfig

from gpt_step import mean_ms  # benchmarks/ is on sys.path when a script there runs


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def time_attention(fn, T: int, dtype: torch.dtype, reps: int) -> float:
    torch.manual_seed(0)
    q, k, v = (torch.randn(4096 // T, 6, T, 32).to(dtype).requires_grad_() for _ in range(3))

    def once():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            y = fn(q, k, v)
        y.float().sum().backward()
    return mean_ms(once, reps, warmup=2)


def time_step(shape: dict, batch: int, impl: str, steps: int) -> float:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, attention=impl, **shape))
    opts = param_groups(model, TrainConfig(optimizer="muon", lr=4e-3, muon_lr=0.02))
    T = shape["block_size"]
    x, y = torch.randint(0, 65, (batch, T)), torch.randint(0, 65, (batch, T))

    def step():
        for o in opts.values():
            o.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        for o in opts.values():
            o.step()
    return mean_ms(step, steps)


SHAPES = {
    "fast": ({"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "activation": "gelu"}, 32),
    "quality": ({"n_layer": 4, "n_head": 6, "n_embd": 192, "block_size": 256, "activation": "relu2",
                 "dropout": 0.1, "attn_dropout": 0.0}, 16),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the whole-step timing")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  threads {args.threads}  torch {torch.__version__}")
    print("| context | dtype | SDPA ms | matmul ms | SDPA / matmul | genforge uses |")
    print("|---:|---|---:|---:|---:|---|")
    for T in (64, 128, 256, 512, 1024):
        for dtype in (torch.float32, torch.bfloat16):
            a = time_attention(sdpa, T, dtype, args.reps)
            b = time_attention(matmul_attention, T, dtype, args.reps)
            uses = "matmul" if use_matmul_attention(torch.empty(1, 1, T, 1, dtype=dtype)) else "SDPA"
            print(f"| {T} | {str(dtype)[6:]} | {a:.1f} | {b:.1f} | {a / b:.2f} | {uses} |", flush=True)
    print("\n| preset shape (bf16) | round | SDPA ms/step | matmul ms/step | SDPA / matmul |")
    print("|---|---:|---:|---:|---:|")
    for name, (shape, batch) in SHAPES.items():
        for r in range(args.rounds):
            a = time_step(shape, batch, "sdpa", args.steps)
            b = time_step(shape, batch, "matmul", args.steps)
            print(f"| {name} | {r + 1} | {a:.1f} | {b:.1f} | {a / b:.2f} |", flush=True)


if __name__ == "__main__":
    main()
