"""GPT training benchmark on tiny Shakespeare (char-level, first 90% train / last 10% val).

    python benchmarks/gpt_train.py                       # all variants, in one invocation
    python benchmarks/gpt_train.py --variants baby,fast --target 1.8857 --max-seconds 120

Each variant trains in its own subprocess (so peak RSS is per variant) with evaluation on the
*whole* validation split every --eval-every steps. Reported per variant: ms/iteration, training
seconds (evaluations excluded) until the validation loss first reaches --target, the best
validation loss, and peak RSS. Variants run one after another in the same invocation, so speed-ups
are ratios measured side by side. Data: $GENFORGE_DATASETS/tinyshakespeare/input.txt.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BABY = {"preset": "baby"}  # nanoGPT's CPU baby GPT, reproduced in genforge (fp32, learned pos, LayerNorm, GELU)


def budget(model: dict, train: dict | None = None, clock: str = "cpu", decay_to_zero: bool = True) -> dict:
    """A time-budget variant of the fast preset: the LR decays over max_seconds of `clock` time,
    linearly to zero (Adam and Muon groups alike), or by the preset's cosine to 10%."""
    t = {"max_iters": 10**7, "time_schedule": True, "clock": clock, "warmup_iters": 100}
    if decay_to_zero:
        t.update(schedule="linear", min_lr=0.0)
    return {"preset": "fast", "model": model, "train": {**t, **(train or {})}}


def v1(model: dict | None = None, train: dict | None = None) -> dict:
    """The `quality` preset as it was until 2026-11-23 02:05 (dropout 0.1, no Muon weight decay),
    with changes: the screening rows in BENCHMARKS.md were measured against it."""
    return {"preset": "quality", "model": {"dropout": 0.1, **(model or {})},
            "train": {"muon_weight_decay": 0.0, **(train or {})}}


Q192 = {"block_size": 128, "n_embd": 192, "n_head": 6, "dropout": 0.1, "activation": "relu2"}
VARIANTS: dict[str, dict] = {
    "baby": BABY,
    "baby+bf16": {"preset": "baby", "train": {"dtype": "bf16"}},
    "baby+lr3e-3": {"preset": "baby", "train": {"lr": 3e-3, "min_lr": 3e-4}},
    "baby+rope": {"preset": "baby", "model": {"pos": "rope"}},
    "baby+qknorm+rms": {"preset": "baby", "model": {"norm": "rmsnorm", "qk_norm": True}},
    "baby+relu2": {"preset": "baby", "model": {"activation": "relu2"}},
    "baby+muon": {"preset": "baby", "train": {"optimizer": "muon"}},
    "fast": {"preset": "fast"},
    "small": {"preset": "small"},
    # ablations: the fast preset with one option reverted to the baby's choice
    # (AdamW, fp32, learned positions, LayerNorm without QK-norm), ReLU² instead of GELU, a smaller batch
    "fast-adamw": {"preset": "fast", "train": {"optimizer": "adamw"}},
    "fast-fp32": {"preset": "fast", "train": {"dtype": "fp32"}},
    "fast-learnedpos": {"preset": "fast", "model": {"pos": "learned"}},
    "fast-layernorm": {"preset": "fast", "model": {"qk_norm": False, "norm": "layernorm"}},
    "fast-relu2": {"preset": "fast", "model": {"activation": "relu2"}},
    "fast-b16": {"preset": "fast", "train": {"batch_size": 16}},
    # quality within a time budget of CPU seconds (one thread), in the order they were measured
    "q128": budget({"block_size": 128, "activation": "relu2"}, decay_to_zero=False),
    "q128-drop": budget({"block_size": 128, "dropout": 0.15, "activation": "relu2"}, decay_to_zero=False),
    "q192": budget(Q192, decay_to_zero=False),
    "q192-lin0": budget(Q192),
    "q192-lin0-a0": budget({**Q192, "attn_dropout": 0.0}),
    "q192c256-lin0": budget({**Q192, "block_size": 256, "attn_dropout": 0.0}, {"batch_size": 16}),
    # the same on the wall clock, for a whole idle machine (both cores)
    "q192-wall": budget(Q192, clock="wall", decay_to_zero=False),
    "q256-wall": budget({"block_size": 256, "n_embd": 192, "n_head": 6, "dropout": 0.1}, {"batch_size": 16},
                        clock="wall", decay_to_zero=False),
    # the `quality` preset; its budget is the wall clock. Until 2026-11-23 02:05 it had dropout 0.1 and no
    # Muon weight decay (`quality-v1`); the -cpu rows below were measured against that version
    "quality": {"preset": "quality"},
    "quality-seed2": {"preset": "quality", "train": {"seed": 2}},
    "quality-seed3": {"preset": "quality", "train": {"seed": 3}},
    "quality-v1": v1(),
    "quality-v1-seed2": v1(train={"seed": 2}),
    # screening against quality-v1, budget in CPU seconds (run with --threads 1)
    "quality-cpu": v1(train={"clock": "cpu"}),
    "quality-d15-cpu": v1({"dropout": 0.15}, {"clock": "cpu"}),
    "quality-d05-cpu": v1({"dropout": 0.05}, {"clock": "cpu"}),
    # bf16 matmul attention against SDPA's fused kernel: the same 800 steps (LR schedule over steps)
    "quality-800": v1(train={"time_schedule": False, "max_seconds": 0, "max_iters": 800}),
    "quality-800-sdpa": v1({"attention": "sdpa"}, {"time_schedule": False, "max_seconds": 0, "max_iters": 800}),
    # after the matmul attention made steps cheaper (2026-11-23): weight decay under Muon
    "quality-wd05-cpu": v1(train={"clock": "cpu", "muon_weight_decay": 0.05}),
    "quality-wd1-cpu": v1(train={"clock": "cpu", "muon_weight_decay": 0.1}),
    "quality-wd2-cpu": v1(train={"clock": "cpu", "muon_weight_decay": 0.2}),
    "quality-wd4-cpu": v1(train={"clock": "cpu", "muon_weight_decay": 0.4}),
    "quality-wd2-d05-cpu": v1({"dropout": 0.05}, {"clock": "cpu", "muon_weight_decay": 0.2}),  # = `quality` now
}


def child(spec: dict) -> None:
    from genforge.families import gpt
    overrides = {k: v for k, v in spec.items() if k in ("model", "data", "train")}
    run, res = gpt.train(preset=spec.get("preset"), overrides=overrides, out=spec["out"], progress=False)
    evals = [json.loads(line) for line in run.file("metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if "eval/val_loss" in e]
    print(json.dumps({"steps": res.step, "evals": [(e["step"], e["eval/train_seconds"], e["eval/val_loss"],
                                                    e["eval/train_cpu_seconds"]) for e in evals],
                      "train_loss_at_best": min(evals, key=lambda e: e["eval/val_loss"]).get("eval/train_loss"),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(name: str, spec: dict, data: str, target: float, max_seconds: float, eval_every: int,
            max_iters: int | None, threads: int = 0, stop: bool = False, log: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec = json.loads(json.dumps(spec))
        spec.setdefault("data", {})["path"] = data
        t = spec.setdefault("train", {})
        t.update({"eval_interval": eval_every, "samples": False, "threads": threads})
        t.setdefault("max_seconds", max_seconds)
        if stop:
            t["stop_at"] = target
        if max_iters:
            t["max_iters"] = max_iters
        spec["out"] = str(Path(tmp) / "run")
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
    evals = r["evals"]
    if log:  # every evaluation: (step, wall s, val loss, CPU s)
        with open(log, "a") as f:
            f.write(json.dumps({"variant": name, "date": time.strftime("%Y-%m-%d %H:%M"), "evals": evals}) + "\n")
    hit = next(((s, sec, cpu) for s, sec, v, cpu in evals if v <= target), None)
    last_step, last_sec, _, last_cpu = evals[-1]
    return {"variant": name, "steps": r["steps"], "ms_per_iter": 1000 * last_sec / max(last_step, 1),
            "cpu_ms_per_iter": 1000 * last_cpu / max(last_step, 1),
            "reach_step": hit[0] if hit else None, "reach_seconds": hit[1] if hit else None,
            "reach_cpu_seconds": hit[2] if hit else None,
            "best_val": min(e[2] for e in evals), "train_seconds": last_sec, "train_loss": r["train_loss_at_best"],
            "wall_seconds": time.perf_counter() - t0, "peak_rss_mb": r["peak_rss_mb"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child")
    p.add_argument("--variants", default="baby,fast")
    p.add_argument("--target", type=float, default=1.8857)
    p.add_argument("--max-seconds", type=float, default=150.0, help="training budget per variant")
    p.add_argument("--max-iters", type=int, default=None, help="override max_iters for every variant")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--repeat", type=int, default=1, help="run the variant list this many times, interleaved")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = torch default)")
    p.add_argument("--stop-at-target", action="store_true", help="stop each run once it reaches --target")
    p.add_argument("--log", help="append each run's evaluations (step, wall s, val loss, CPU s) to this JSONL file")
    args = p.parse_args()
    if args.child:
        return child(json.loads(args.child))
    data = Path(os.environ.get("GENFORGE_DATASETS", "../shared/datasets")) / "tinyshakespeare" / "input.txt"
    assert data.exists(), f"{data} not found: set GENFORGE_DATASETS"
    names = args.variants.split(",")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  target val loss {args.target}  cpus {os.cpu_count()}  "
          f"threads {args.threads or 'default'}  load {os.getloadavg()[0]:.1f}")
    print("| variant | ms/iter (wall) | CPU ms/iter | steps to target | wall s to target | CPU s to target "
          "| best val | train loss there | steps | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for _ in range(args.repeat):
        for name in names:
            r = measure(name, VARIANTS[name], str(data), args.target, args.max_seconds, args.eval_every, args.max_iters,
                        args.threads, args.stop_at_target, args.log)
            hit = r["reach_seconds"] is not None
            reach = f"{r['reach_seconds']:.1f} | {r['reach_cpu_seconds']:.1f}" if hit else "not reached | -"
            print(f"| {name} | {r['ms_per_iter']:.1f} | {r['cpu_ms_per_iter']:.1f} | {r['reach_step']} | {reach} | "
                  f"{r['best_val']:.4f} | {r['train_loss'] or float('nan'):.4f} | {r['steps']} | {r['peak_rss_mb']:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
