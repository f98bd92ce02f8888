"""Plot validation-loss curves from the evaluation log that `gpt_train.py --log FILE` appends to.

    python benchmarks/plot_evals.py --log evals.jsonl --variants quality-cpu,quality-wd2-cpu --out curves.png

Each line is one run: validation loss on the whole split against the training step. A variant
logged more than once is drawn from its newest record. `--target` draws a horizontal line.
"""
from __future__ import annotations

import argparse
import json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", required=True)
    p.add_argument("--variants", required=True, help="comma-separated, in legend order")
    p.add_argument("--labels", help="comma-separated legend labels (default: the variant names)")
    p.add_argument("--out", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--target", type=float)
    p.add_argument("--from-step", type=int, default=0, help="leave out evaluations before this step")
    args = p.parse_args()
    runs = {}
    with open(args.log) as f:
        for line in f:
            rec = json.loads(line)
            runs[rec["variant"]] = rec["evals"]
    names = args.variants.split(",")
    missing = [n for n in names if n not in runs]
    if missing:
        raise SystemExit(f"{args.log}: no record of {', '.join(missing)}")
    labels = args.labels.split(",") if args.labels else names
    if len(labels) != len(names):
        raise SystemExit("--labels needs one label per variant")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, label in zip(names, labels):
        pts = [(step, val) for step, _, val, _ in runs[name] if step >= args.from_step]
        ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", markersize=3, label=label)
    if args.target is not None:
        ax.axhline(args.target, color="grey", linestyle="--", linewidth=1, label=f"target {args.target}")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss (whole split, nats/char)")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
