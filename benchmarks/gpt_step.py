"""Time one GPT training step (forward, backward, AdamW) for a few model variants, side by side.

    python benchmarks/gpt_step.py --threads 2
    python benchmarks/gpt_step.py --threads 2 --variants bytes,torch --block-size 256 --batch 16

Variants: `bytes` (genforge's byte-mask dropout), `torch` (nn.Dropout in its place), `nodrop`
(dropout 0). The model is the `quality` preset's shape (4 x 6 x 192, ReLU², residual dropout 0.1,
no attention dropout) under bf16 autocast on random tokens; no data, no evaluation.
"""
from __future__ import annotations

import argparse
import time

import torch

from genforge.models.gpt import GPT, Dropout, GPTConfig


def build(variant: str, block_size: int) -> GPT:
    cfg = GPTConfig(vocab_size=65, block_size=block_size, n_layer=4, n_head=6, n_embd=192, activation="relu2",
                    dropout=0.0 if variant == "nodrop" else 0.1, attn_dropout=0.0)
    model = GPT(cfg)
    if variant == "torch":
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, Dropout):
                    setattr(module, name, torch.nn.Dropout(child.p))
    return model


def mean_ms(fn, reps: int, warmup: int = 3) -> float:
    """Mean milliseconds per call of fn over `reps` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return 1000 * (time.perf_counter() - t0) / reps


def ms_per_step(model: GPT, batch: int, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    T = model.config.block_size
    x, y = torch.randint(0, 65, (batch, T)), torch.randint(0, 65, (batch, T))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return mean_ms(step, steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="bytes,torch,nodrop")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} threads {args.threads} context {args.block_size} batch {args.batch}")
    print("| variant | ms/step | tokens/s |\n|---|---:|---:|")
    for name in args.variants.split(","):
        ms = ms_per_step(build(name, args.block_size), args.batch, args.steps)
        print(f"| {name} | {ms:.1f} | {args.batch * args.block_size / ms * 1000:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
