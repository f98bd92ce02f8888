"""Text-to-image benchmark (the DALL-E route): both stages trained under one time budget, then evaluated.

    GENFORGE_DATASETS=../shared/datasets python benchmarks/text2image.py --data mnist --minutes 10 30 \
        --out runs/bench-t2i [--stage1-share 0.3 --n 1000 --guidance 1 2 3 5]

For each budget (minutes of training, both stages counted): `genforge train vqvae` for
stage1_share of it, then `genforge train text2image` over that tokenizer for the rest (each with
train.max_seconds, the LR decayed over its own share). Then: caption accuracy on the training and
held-out phrasings (and held-out combos for shapes) and feature-FD against the real-data floor
(genforge.metrics.text2image.evaluate_text2image), the tokenizer's codebook usage, images/s at
batch 1 and 64, the seconds for 16 images, and a guidance sweep of the held-out caption accuracy.
Prints a markdown table per budget (and one JSON line each); RUN/bench.json holds everything.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import warnings
from pathlib import Path

import torch

import genforge
from genforge import families
from genforge.metrics.protocol import resolve_dataset
from genforge.metrics.text2image import evaluate_text2image


def train_both(data: str, minutes: float, share: float, out: Path, threads: int) -> tuple[Path, Path, dict]:
    """The tokenizer run, the prior run and the seconds each trained."""
    data_path = resolve_dataset(data, what="--data")
    common = {"threads": threads, "max_iters": 10**7, "time_schedule": True}
    seconds = {"stage1": minutes * 60 * share, "prior": minutes * 60 * (1 - share)}
    preset = "conv-rgb32" if data == "shapes" else None  # the shapes set is 32x32 RGB: 8x8 codes
    vq, r1 = families.get("vqvae").train(preset=preset, overrides={
        "data": {"path": data_path}, "train": {**common, "max_seconds": seconds["stage1"],
                                               "eval_interval": 500}}, out=str(out / "vq"), progress=False)
    prior, r2 = families.get("text2image").train(overrides={
        "data": {"path": data}, "prior": {"vqvae": str(vq.path)},
        "train": {**common, "max_seconds": seconds["prior"], "eval_interval": 500}}, out=str(out / "prior"),
        progress=False)
    return vq.path, prior.path, {"stage1_seconds": r1.seconds, "prior_seconds": r2.seconds}


def images_per_second(pipe, batch: int, repeats: int) -> float:
    pipe.generate("a handwritten seven", n=batch, seed=0)  # warm-up
    t0 = time.perf_counter()
    for i in range(repeats):
        pipe.generate("a handwritten seven", n=batch, seed=i + 1)
    return batch * repeats / (time.perf_counter() - t0)


def bench(args, minutes: float) -> dict:
    out = Path(args.out) / f"{minutes:g}min"
    vq_run, prior_run, row = train_both(args.data, minutes, args.stage1_share, out, args.threads)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    row.update(data=args.data, minutes=minutes)
    stage1 = genforge.load(vq_run, device="cpu").evaluate(n=args.n)
    row.update(codes_used=stage1["codes_used"], recon_mse=stage1["mse"])
    pipe = genforge.load(prior_run, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # held-out phrasings carry words the prior never saw: left out
        report = evaluate_text2image(pipe, n=args.n, seed=0)
        row["sweep"] = {}
        for g in args.guidance:
            pipe.pc = dataclasses.replace(pipe.pc, guidance=g)
            acc = evaluate_text2image(pipe, n=args.sweep_n, seed=1)["caption_accuracy"]
            row["sweep"][g] = {split: v["all"] for split, v in acc.items()}
    row["caption_accuracy"] = {split: v["all"] for split, v in report["caption_accuracy"].items()}
    q = report["quality"]
    row.update(feature_fd=q["feature_fd"], feature_fd_floor=q.get("feature_fd_floor"),
               judge_accuracy=report["judge_accuracy"])
    pipe.pc = dataclasses.replace(pipe.pc, guidance=args.guidance[len(args.guidance) // 2])
    row["img_per_s_batch1"] = images_per_second(pipe, 1, 8)
    row["img_per_s_batch64"] = images_per_second(pipe, 64, 2)
    t0 = time.perf_counter()
    pipe.generate("a handwritten seven", n=16, seed=0)
    row["seconds_16_images"] = time.perf_counter() - t0
    prompts = [f"a handwritten {w}" for w in ("zero", "one", "two", "three", "seven")]
    pipe.grid(prompts, 8, seed=0).save(out / "grid.png")
    (out / "bench.json").write_text(json.dumps({"row": row, "report": report}, indent=2, default=float))
    return row


def table(row: dict) -> str:
    acc = " / ".join(f"{k} {v:.1%}" for k, v in row["caption_accuracy"].items())
    floor = row["feature_fd_floor"]
    lines = ["| data | minutes (stage 1 + prior s) | caption accuracy (all) | feature-FD (floor) | codes used | "
             "img/s b1 | img/s b64 | 16 images s |", "|---|---|---|---|---|---|---|---|",
             f"| {row['data']} | {row['minutes']:g} ({row['stage1_seconds']:.0f} + {row['prior_seconds']:.0f}) | "
             f"{acc} | "
             f"{row['feature_fd']:.2f} ({floor:.2f}) | {row['codes_used']:.0%} | {row['img_per_s_batch1']:.1f} | "
             f"{row['img_per_s_batch64']:.1f} | {row['seconds_16_images']:.2f} |", "",
             "| guidance | " + " | ".join(next(iter(row["sweep"].values()))) + " |",
             "|---|" + "---|" * len(next(iter(row["sweep"].values())))]
    lines += [f"| {g:g} | " + " | ".join(f"{v:.1%}" for v in accs.values()) + " |" for g, accs in row["sweep"].items()]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="mnist", help="a data-set name (mnist, shapes) or path")
    p.add_argument("--minutes", type=float, nargs="+", default=[10.0, 30.0], help="training budgets, both stages")
    p.add_argument("--stage1-share", type=float, default=0.3, help="share of each budget for the tokenizer")
    p.add_argument("--n", type=int, default=1000, help="images per caption set in the evaluation")
    p.add_argument("--sweep-n", type=int, default=300, help="images per caption set at each guidance scale")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0])
    p.add_argument("--threads", type=int, default=int(os.environ.get("GENFORGE_THREADS", "0")), help="0 = torch's")
    p.add_argument("--out", default="runs/bench-t2i")
    args = p.parse_args()
    for minutes in args.minutes:
        row = bench(args, minutes)
        print(json.dumps(row, default=float), flush=True)
        print(table(row), flush=True)


if __name__ == "__main__":
    main()
