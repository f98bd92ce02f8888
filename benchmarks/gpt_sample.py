"""GPT sampling speed: KV-cached genforge sampler vs a reference loop without a cache.

    python benchmarks/gpt_sample.py [--threads 1] [--new-tokens 500]

Rates are per second of this process's CPU time, so use --threads 1 (the default) on a shared
machine. The reference loop re-runs the whole (cropped) context through the model for every new token
and draws with torch.multinomial: the way simple samplers without a KV cache work. Both run
in the same invocation on the same weights, so the speed-up is a side-by-side ratio. Speed does
not depend on the weights' values, so the models are freshly initialised (65-character vocab).
Batched throughput is total new tokens per second over the batch.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from genforge.families.gpt import PRESETS
from genforge.models.gpt import GPT, GPTConfig


def reference(model: GPT, idx: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    T = model.config.block_size
    for _ in range(n):
        logits, _ = model(idx[:, -T:])
        logits = logits[:, -1] / 0.8
        kth = torch.topk(logits, 50).values[:, -1:]
        probs = logits.masked_fill(logits < kth, float("-inf")).softmax(-1)
        idx = torch.cat([idx, torch.multinomial(probs, 1, generator=g)], 1)
    return idx


def rate(fn, tokens: int, repeat: int) -> float:
    """Tokens per second of CPU time (best of `repeat`): with one thread this is what an idle
    machine gives in wall time, and it stays meaningful when other jobs share the CPU."""
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return tokens / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--presets", default="baby,fast,small")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  threads {args.threads}  {args.new_tokens} new tokens, "
          f"best of {args.repeat}")
    print(f"load average {os.getloadavg()[0]:.1f}; rates are tokens per CPU-second")
    print("| preset | batch | reference tok/s | genforge tok/s | speed-up |")
    print("|---|---:|---:|---:|---:|")
    n = args.new_tokens
    for name in args.presets.split(","):
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=65, **PRESETS[name].get("model", {}))).eval()
        for batch in (1, 8, 32):
            idx = torch.zeros(batch, 1, dtype=torch.long)
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                model.generate(idx, 20, generator=g)  # warm-up
                ours = rate(lambda: model.generate(idx, n, temperature=0.8, top_k=50, generator=g), n * batch, args.repeat)
                ref = rate(lambda: reference(model, idx, n, g), n * batch, 1 if batch > 1 else args.repeat)
            print(f"| {name} | {batch} | {ref:,.0f} | {ours:,.0f} | {ours / ref:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
