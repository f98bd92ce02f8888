"""`genforge demo`: train a small GPT on text that ships with Python, then sample from it.

The corpus is the standard library's `pydoc_data.topics` (~465 KB of English documentation), so
the demo needs no download. It trains the `small` preset for a time budget, samples, and prints
where the run lives and what to try next.
"""
from __future__ import annotations

import sys
from pathlib import Path


def corpus_path() -> Path:
    from pydoc_data.topics import topics

    from .data.text import cache_dir
    path = cache_dir() / "datasets" / "pydoc" / "topics.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(topics[k].strip() for k in sorted(topics)) + "\n")
    return path


def run(out: str = "runs/demo", seconds: float = 90.0, resume: bool = False) -> int:
    from . import load
    from .families import gpt
    data = corpus_path()
    print(f"genforge demo: training a small character-level GPT on {data} for about {seconds:.0f}s",
          file=sys.stderr)
    overrides = {"data": {"path": str(data)},
                 "train": {"max_seconds": seconds, "max_iters": 100_000, "eval_interval": 200}}
    run_dir, result = gpt.train(preset="small", overrides=overrides, out=out, resume=resume)
    print(f"\ntrained {result.step} steps in {result.seconds:.0f}s; best validation loss {result.best:.3f}\n")
    model = load(run_dir.path)
    prompt = "The with statement"
    print("--- sample (prompt: 'The with statement') ---")
    print(model.generate(prompt, max_new_tokens=300, temperature=0.8, top_k=40, seed=0))
    print("---")
    print(f"\nThe run lives in {run_dir.path}/ (config.json, checkpoints/, metrics.jsonl, loss.png, tb/).")
    print("Try next:")
    print(f"  genforge sample {run_dir.path} --prompt \"The class\" --num-samples 3 --seed 1")
    print(f"  genforge eval {run_dir.path} --data {data}")
    print("  genforge train gpt --data YOUR.txt --out runs/mine      # your own text")
    print(f"  tensorboard --logdir {run_dir.path}/tb")
    return 0
