"""GPT sampling speed: the ONNX runtime (genforge/onnx_pipelines.py) against genforge's torch sampler.

    python benchmarks/onnx_sample.py runs/shakespeare            # exports to a temporary folder first
    python benchmarks/onnx_sample.py runs/shakespeare --export runs/shakespeare/onnx --tokens 300

What is measured, in one invocation on the same weights, wall-clock tokens per second (new tokens of all
rows together), best of --repeat, at batch 1 and batch 32, one thread each:
- `torch`: `GPTPipeline.stream` in fp32, what `genforge sample` runs (KV cache, the one-token path);
- `onnx fp32` / `onnx int8`: `OnnxGPTPipeline.tokens` (onnxruntime on the exported decoder, its
  present keys/values fed back as the past, numpy sampling) on model.onnx and model.int8.onnx.
Same prompt, temperature 0.8, top-k 50 for all. Write the numbers to BENCHMARKS.md by hand.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def best_rate(fn, tokens: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return tokens / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a trained GPT run")
    ap.add_argument("--export", help="an existing export of it with an int8 file (default: export now)")
    ap.add_argument("--tokens", type=int, default=200, help="new tokens per row")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import torch

    from genforge import inference
    from genforge.export import export
    from genforge.onnx_pipelines import load
    torch.set_num_threads(1)
    out = Path(args.export) if args.export else export(args.run, out=tempfile.mkdtemp() + "/onnx", quantize="int8")
    pipe = inference.load(args.run, device="cpu")
    onnx_fp32, onnx_int8 = load(out, model="model.onnx"), load(out, model="model.int8.onnx")
    prompt, kw = "\n", dict(temperature=0.8, top_k=50, seed=0)
    print(f"{'sampler':12s} {'batch':>5s} {'tokens/s':>10s}")
    for batch in (1, 32):
        n = args.tokens * batch
        rates = {"torch": best_rate(lambda: list(pipe.stream(prompt, args.tokens, num_samples=batch, **kw)), n, args.repeat)}
        for name, p in (("onnx fp32", onnx_fp32), ("onnx int8", onnx_int8)):
            ids = p.encode_prompt(prompt)
            rates[name] = best_rate(lambda p=p, ids=ids: list(p.tokens(ids, args.tokens, num_samples=batch, **kw)),
                                    n, args.repeat)
        for name, rate in rates.items():
            print(f"{name:12s} {batch:5d} {rate:10.0f}")


if __name__ == "__main__":
    main()
