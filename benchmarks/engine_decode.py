"""The server's batching engine: tokens/s of B concurrent generations, this checkout against another.

    python benchmarks/engine_decode.py --baseline /path/to/old/checkout [--preset small] [--batches 1,8,32]
                                       [--staggered]

Each measurement submits B seeded sequences of --tokens tokens to an `Engine` over a freshly initialised
model of the preset (65-character vocabulary; speed does not depend on the weights) and waits for all of
them: aggregate generated tokens per wall-clock second, best of --repeat, the two checkouts interleaved.
--staggered gives sequence i a prompt of 1 + 7i % 40 tokens, so every row decodes at its own position
(as a server's clients do: the per-row path, a padded attention over the slots) instead of one shared one.
No HTTP: benchmarks/serve.py measures the server around the engine.
"""
from __future__ import annotations

import argparse
import os
import threading
import time

import torch
from checkouts import import_genforge

NAMES = ("genforge.models.gpt", "genforge.families.gpt", "genforge.engine")


def engine_rate(mods, preset: str, batch: int, tokens: int, repeat: int, staggered: bool) -> float:
    gpt, fam, eng = mods
    torch.manual_seed(0)
    model = gpt.GPT(gpt.GPTConfig(vocab_size=65, **fam.PRESETS[preset].get("model", {}))).eval()
    engine = eng.Engine(eng.GPTSlots(model), max_batch=max(batch, 1))
    try:
        best = float("inf")
        for r in range(repeat + 1):  # the first round warms up
            done = [threading.Event() for _ in range(batch)]
            t0 = time.perf_counter()
            for i in range(batch):
                prompt = [1 + j % 60 for j in range(1 + 7 * i % 40)] if staggered else [1, 2, 3]
                engine.submit(prompt, eng.SamplingParams(max_tokens=tokens, seed=i, temperature=0.8),
                              lambda ev, e=done[i]: e.set() if isinstance(ev, eng.Done) else None)
            for e in done:
                assert e.wait(600), "the engine did not finish"
            if r:
                best = min(best, time.perf_counter() - t0)
    finally:
        engine.close()
    return batch * tokens / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, help="another genforge checkout to time beside this one")
    p.add_argument("--presets", default="small,fast")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--staggered", action="store_true", help="prompts of different lengths: a position per row")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    here, old = import_genforge(None, NAMES), import_genforge(args.baseline, NAMES)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  load average {os.getloadavg()[0]:.2f}  "
          f"threads {args.threads}, {args.tokens} tokens per sequence, best of {args.repeat}"
          f"{', staggered prompts' if args.staggered else ''}")
    print("| preset | sequences | baseline tok/s | this tok/s | this / baseline |\n|---|---:|---:|---:|---:|")
    for preset in args.presets.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            a, b = [], []
            for _ in range(2):
                b.append(engine_rate(old, preset, batch, args.tokens, args.repeat, args.staggered))
                a.append(engine_rate(here, preset, batch, args.tokens, args.repeat, args.staggered))
            print(f"| {preset} | {batch} | {max(b):,.0f} | {max(a):,.0f} | {max(a) / max(b):.3f} |", flush=True)


if __name__ == "__main__":
    main()
