"""GPT sampling speed: genforge's sampler against nanoGPT's `generate`, and against another genforge checkout.

    python benchmarks/gpt_sample.py                                  # presets baby,small,fast,quality
    python benchmarks/gpt_sample.py --baseline /path/to/old/checkout  # old commit vs this one, side by side

What is measured, all in one invocation on the same weights (speed does not depend on their values, so
models are freshly initialised over a 65-character vocabulary), wall-clock tokens per second:
- `nanoGPT`: nanoGPT's `GPT.generate` reproduced faithfully on the same network: no KV cache, the context
  cropped to the block size, the LM head on the last position only, temperature, top-k, softmax and
  `torch.multinomial`, with torch's default threads (what `sample.py` does). Batch 1 only.
- `genforge`: what `genforge sample` runs: `GPTPipeline.stream` (KV cache, the one-token decode path,
  exponential-race sampling, incremental text decoding) in fp32 with one thread, the CLI's defaults.
  Also with bf16 autocast and with torch's default threads, which is how the decode dtype and thread
  count were chosen.
- `baseline` (with --baseline DIR): the same pipeline from another genforge checkout, interleaved with
  this one, for "no speed lost" checks.
- `nanoGPT sample.py` (with --nanogpt DIR --nanogpt-out OUT_DIR): nanoGPT's own script, run as it is from
  a checkout outside this repository on a checkpoint its train.py wrote (its CPU "baby" shape:
  `--n_layer=4 --n_head=4 --n_embd=128 --block_size=64`), timed with 1 and 1 + k samples so the
  difference is generation alone, beside genforge's `baby` and `fast` presets in the same invocation.
Batch 32 rows time `--num-samples 32`-style sampling (32 rows per step). 500 new tokens, top-k 200,
temperature 0.8 by default, best of --repeat.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

import torch
import torch.nn.functional as F
from checkouts import import_genforge

VOCAB = "\n" + "".join(chr(i) for i in range(32, 96))  # 65 characters, like tiny Shakespeare's


def nanogpt_generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int):
    """nanoGPT's sampling loop, step for step, over a genforge GPT."""
    for _ in range(max_new_tokens):
        idx_cond = idx if idx.size(1) <= model.config.block_size else idx[:, -model.config.block_size:]
        logits, _ = model(idx_cond, last_only=True)
        logits = logits[:, -1, :] / temperature
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits[logits < v[:, [-1]]] = -float("Inf")
        probs = F.softmax(logits, dim=-1)
        idx_next = torch.multinomial(probs, num_samples=1)
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


def best_rate(fn, tokens: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return tokens / best


def pipeline(mods, preset: str):
    """A genforge GPTPipeline over a fresh model of `preset`, as `genforge.load` would build it (fp32, CPU)."""
    gpt, fam, toks = mods
    torch.manual_seed(0)
    model = gpt.GPT(gpt.GPTConfig(vocab_size=len(VOCAB), **fam.PRESETS[preset].get("model", {}))).eval()
    rt = fam.make_runtime("cpu", "fp32")
    return fam.GPTPipeline(model, toks.CharTokenizer(VOCAB), {"family": "gpt"}, rt)


def sample_rate(pipe, batch: int, n: int, repeat: int, threads: int, bf16: bool = False) -> float:
    torch.set_num_threads(threads)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def run():
        with ctx:
            for _ in pipe.stream("\n", max_new_tokens=n, temperature=0.8, top_k=200, seed=0, num_samples=batch):
                pass
    with ctx:
        for _ in pipe.stream("\n", max_new_tokens=8, seed=0, num_samples=batch):  # warm-up
            pass
    return best_rate(run, n * batch, repeat)


def nanogpt_script_rate(nanogpt: str, out_dir: str, python: str, n: int, extra: int = 4) -> float:
    """Tokens/s of nanoGPT's own sample.py: (time with 1 + extra samples - time with 1) / (extra * n)."""
    import subprocess

    def run(samples: int) -> float:
        cmd = [python, "sample.py", f"--out_dir={out_dir}", "--device=cpu", f"--num_samples={samples}",
               f"--max_new_tokens={n}", "--top_k=200", "--temperature=0.8", "--compile=False"]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=nanogpt, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - t0
    one = min(run(1) for _ in range(2))
    more = min(run(1 + extra) for _ in range(2))
    return extra * n / (more - one)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="baby,small,fast,quality")
    p.add_argument("--new-tokens", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batches", default="1,32")
    p.add_argument("--baseline", help="another genforge checkout to time beside this one")
    p.add_argument("--no-reference", action="store_true", help="skip the nanoGPT loop")
    p.add_argument("--nanogpt", help="a nanoGPT checkout: also time its own sample.py")
    p.add_argument("--nanogpt-out", help="the out_dir holding the ckpt.pt its train.py wrote")
    p.add_argument("--nanogpt-python", default=sys.executable, help="python that runs nanoGPT (needs tiktoken)")
    args = p.parse_args()
    default_threads = torch.get_num_threads()
    names = ("genforge.models.gpt", "genforge.families.gpt", "genforge.data.tokenizers")
    here = import_genforge(None, names)
    old = import_genforge(args.baseline, names) if args.baseline else None
    n = args.new_tokens
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  load average {os.getloadavg()[0]:.2f}  "
          f"{n} new tokens, top-k 200, temperature 0.8, best of {args.repeat}; wall-clock tokens/s; torch's "
          f"default threads: {default_threads}")
    head = "| preset | batch | nanoGPT (default threads) | genforge fp32 1 thread | x nanoGPT |"
    head += f" genforge bf16 1 thread | genforge fp32 {default_threads} threads |"
    if old:
        head += " baseline fp32 1 thread | this / baseline |"
    print(head)
    print("|" + "|".join(["---"] + ["---:"] * (head.count("|") - 2)) + "|")
    if args.nanogpt:
        script = nanogpt_script_rate(args.nanogpt, args.nanogpt_out, args.nanogpt_python, n)
        print(f"nanoGPT's own sample.py (its baby model, default threads): {script:,.0f} tokens/s")
    for name in args.presets.split(","):
        pipe = pipeline(here, name)
        base = pipeline(old, name) if old else None
        for batch in [int(b) for b in args.batches.split(",")]:
            ref = None
            if batch == 1 and not args.no_reference:
                torch.set_num_threads(default_threads)
                idx = torch.zeros(1, 1, dtype=torch.long)
                with torch.no_grad():
                    nanogpt_generate(pipe.model, idx, 8, 0.8, 200)
                    ref = best_rate(lambda: nanogpt_generate(pipe.model, idx, n, 0.8, 200), n, args.repeat)
            ours, theirs = [], []
            for _ in range(2):  # interleaved: this checkout, then the baseline, twice
                ours.append(sample_rate(pipe, batch, n, args.repeat, 1))
                if base is not None:
                    theirs.append(sample_rate(base, batch, n, args.repeat, 1))
            ours_fp32 = max(ours)
            low = sample_rate(pipe, batch, n, args.repeat, 1, bf16=True)
            multi = sample_rate(pipe, batch, n, args.repeat, default_threads)
            row = (f"| {name} | {batch} | {f'{ref:,.0f}' if ref else '-'} | {ours_fp32:,.0f} | "
                   f"{f'{ours_fp32 / ref:.2f}x' if ref else '-'} | {low:,.0f} | {multi:,.0f} |")
            if base is not None:
                row += f" {max(theirs):,.0f} | {ours_fp32 / max(theirs):.3f} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
