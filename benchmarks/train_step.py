"""Training-step speed through the whole trainer, this checkout against another, side by side.

    python benchmarks/train_step.py --baseline /path/to/old/checkout [--runs gpt:quality,gpt:fast,gan:cdcgan]

Each run trains a family's preset for --steps steps through its Python API (`genforge.families.X.train`)
in a fresh subprocess with that checkout first on the path, on the real data sets under
$GENFORGE_DATASETS (tiny Shakespeare for GPT, MNIST for GAN), samples and evaluations off until the last
step. The figure is the median of the trainer's own logged throughput (tokens or images per second over
each logging interval), the first interval (warm-up) dropped. The checkouts alternate, --rounds times each;
the best median per side is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, importlib
family, preset, data, steps, out, threads = sys.argv[1:7]
fam = importlib.import_module(f"genforge.families.{family}")
over = {"data": {"path": data}, "train": {"max_iters": int(steps), "eval_interval": int(steps), "log_interval": 10,
        "samples": False, "threads": int(threads), "max_seconds": 0.0, "time_schedule": False}}
if family == "gan":
    over["gan"] = {"monitor_samples": 0}
if family == "gpt":
    over["train"]["eval_iters"] = 1
fam.train(preset=preset, overrides=over, out=out, progress=False)
"""


def one_run(checkout: str, family: str, preset: str, data: str, steps: int, threads: int, tmp: Path) -> float:
    out = tempfile.mkdtemp(dir=tmp)
    env = {**os.environ, "PYTHONPATH": checkout}
    subprocess.run([sys.executable, "-c", CHILD, family, preset, data, str(steps), out, str(threads)], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    rates = [v for r in rows for k, v in r.items() if k.startswith("train/") and k.endswith("_per_s")]
    return statistics.median(rates[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, help="another genforge checkout")
    p.add_argument("--runs", default="gpt:quality,gpt:fast,gan:cdcgan,gan:mlp")
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    root = Path(os.environ.get("GENFORGE_DATASETS", "../shared/datasets"))
    data = {"gpt": str(root / "tinyshakespeare" / "input.txt"), "gan": str(root / "mnist")}
    here = str(Path(__file__).resolve().parents[1])
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  load average {os.getloadavg()[0]:.2f}  "
          f"threads {args.threads}, {args.steps} steps, best median of {args.rounds} rounds per side")
    print("| run | baseline items/s | this items/s | this / baseline |\n|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("GENFORGE_CACHE", str(Path(tmp) / "cache"))
        for spec in args.runs.split(","):
            family, preset = spec.split(":")
            old, new = [], []
            for _ in range(args.rounds):
                old.append(one_run(args.baseline, family, preset, data[family], args.steps, args.threads, Path(tmp)))
                new.append(one_run(here, family, preset, data[family], args.steps, args.threads, Path(tmp)))
            print(f"| {family} {preset} | {max(old):,.0f} | {max(new):,.0f} | {max(new) / max(old):.3f} |", flush=True)


if __name__ == "__main__":
    main()
