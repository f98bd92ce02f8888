"""Text-to-image benchmark, both routes: trained under one time budget, then evaluated the same way.

    GENFORGE_DATASETS=../shared/datasets python benchmarks/text2image.py --data mnist --minutes 10 30 \
        --out runs/bench-t2i [--route dalle|gan --stage1-share 0.3 --n 1000 --guidance 1 2 3 5 --positions 1d
         --guidance-from 7]

For each budget (minutes of training, both stages counted), the DALL-E route (`--route dalle`, the
default): `genforge train vqvae` for stage1_share of it, then `genforge train text2image` over that
tokenizer for the rest (each with train.max_seconds, the LR decayed over its own share; the prior
ends with its guidance sweep, which sets the run's default scale). The GAN route (`--route gan`):
`genforge train captiongan --preset captiongan` for the whole budget. Then, for either: caption
accuracy on the training and held-out phrasings (and held-out combos for shapes) and feature-FD
against the real-data floor (genforge.metrics.text2image.evaluate_text2image), images/s at batch 1
and 64 and the seconds for 16 images on a prompt of the data set; for the DALL-E route also the
tokenizer's codebook usage and a guidance sweep of the caption accuracy on every split.
Prints a markdown table per budget (and one JSON line each); RUN/bench.json holds everything.
`--judge-steps N` trains the feature network / shapes judge for N steps (a quick smoke run; 0 = theirs).
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import torch

import genforge
from genforge import families
from genforge.images import make_grid, to_pil
from genforge.metrics.protocol import resolve_dataset
from genforge.metrics.text2image import evaluate_text2image


# prompts the speed is measured on and the grid shows, per data set (words its models know)
PROMPTS = {"shapes": ["a small red circle at the top left", "a large blue square in the centre",
                      "a green triangle at the bottom", "a yellow circle above a blue square",
                      "a red square to the left of a green circle"],
           "digits": [f"a handwritten {w}" for w in ("zero", "one", "two", "three", "seven")]}


def train_both(data: str, minutes: float, share: float, out: Path, threads: int,
               judge_steps: int, positions: str, guidance_from: int = 0) -> tuple[Path, Path, dict]:
    """The tokenizer run, the prior run and the seconds each trained."""
    data_path = resolve_dataset(data, what="--data")
    common = {"threads": threads, "max_iters": 10**7, "time_schedule": True}
    seconds = {"stage1": minutes * 60 * share, "prior": minutes * 60 * (1 - share)}
    preset = "conv-rgb32" if data == "shapes" else None  # the shapes set is 32x32 RGB: 8x8 codes
    vq, r1 = families.get("vqvae").train(preset=preset, overrides={
        "data": {"path": data_path}, "train": {**common, "max_seconds": seconds["stage1"],
                                               "eval_interval": 500}}, out=str(out / "vq"), progress=False)
    prior, r2 = families.get("text2image").train(overrides={
        "data": {"path": data}, "prior": {"vqvae": str(vq.path), "feature_steps": judge_steps, "positions": positions,
                                        "guidance_from": guidance_from},
        "train": {**common, "max_seconds": seconds["prior"], "eval_interval": 500}}, out=str(out / "prior"),
        progress=False)
    return vq.path, prior.path, {"stage1_seconds": r1.seconds, "prior_seconds": r2.seconds}


def train_gan(data: str, minutes: float, out: Path, threads: int) -> tuple[Path, dict]:
    """A caption GAN (preset captiongan) at the data set's size, trained for the whole budget."""
    shape = {"image_size": 32, "channels": 3} if data == "shapes" else {"image_size": 28, "channels": 1}
    run, r = families.get("captiongan").train(preset="captiongan", overrides={
        "data": {"path": resolve_dataset(data, what="--data")}, "model": shape, "gan": {"monitor_samples": 0},
        "train": {"threads": threads, "max_iters": 10**7, "time_schedule": True, "max_seconds": minutes * 60,
                  "eval_interval": 500}}, out=str(out / "gan"), progress=False)
    return run.path, {"stage1_seconds": 0.0, "prior_seconds": r.seconds}


def images_per_second(pipe, prompt: str, batch: int, repeats: int) -> float:
    pipe.generate(prompt, n=batch, seed=0)  # warm-up
    t0 = time.perf_counter()
    for i in range(repeats):
        pipe.generate(prompt, n=batch, seed=i + 1)
    return batch * repeats / (time.perf_counter() - t0)


def bench(args, minutes: float) -> dict:
    out = Path(args.out) / f"{minutes:g}min"
    judged = {"feature_steps": args.judge_steps, "judge_steps": args.judge_steps}
    if args.route == "gan":
        run, row = train_gan(args.data, minutes, out, args.threads)
    else:
        vq_run, run, row = train_both(args.data, minutes, args.stage1_share, out, args.threads, args.judge_steps,
                                      args.positions, args.guidance_from)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    row.update(data=args.data, route=args.route, minutes=minutes, codes_used=None, recon_mse=None, sweep={})
    if args.route == "dalle":
        stage1 = genforge.load(vq_run, device="cpu").evaluate(n=args.n, feature_steps=args.judge_steps)
        row.update(codes_used=stage1["codes_used"], recon_mse=stage1["mse"])
        if "judge_on_reconstructions" in stage1:  # shapes: the caption accuracy a prior can reach through these codes
            row["recon_ceiling"] = {k: v["all"] for k, v in stage1["judge_on_reconstructions"].items()}
    pipe = genforge.load(run, device="cpu")
    row["guidance"] = pipe.meta.get("guidance")  # the prior's measured default (None: a GAN has no guidance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # held-out phrasings carry words the model never saw: left out
        report = evaluate_text2image(pipe, n=args.n, seed=0, **judged)
        default = getattr(pipe, "guidance", None)
        for g in args.guidance if default is not None else []:
            pipe.guidance = g
            acc = evaluate_text2image(pipe, n=args.sweep_n, seed=1, **judged)["caption_accuracy"]
            row["sweep"][g] = {split: v["all"] for split, v in acc.items()}
        if default is not None:
            pipe.guidance = default
    row["caption_accuracy"] = {split: v["all"] for split, v in report["caption_accuracy"].items()}
    q = report["quality"]
    row.update(feature_fd=q["feature_fd"], feature_fd_floor=q.get("feature_fd_floor"),
               judge_accuracy=report["judge_accuracy"])
    prompts = PROMPTS["shapes" if args.data == "shapes" else "digits"]
    row["img_per_s_batch1"] = images_per_second(pipe, prompts[-1], 1, 8)
    row["img_per_s_batch64"] = images_per_second(pipe, prompts[-1], 64, 2)
    t0 = time.perf_counter()
    pipe.generate(prompts[-1], n=16, seed=0)
    row["seconds_16_images"] = time.perf_counter() - t0
    to_pil(make_grid(pipe.generate([p for p in prompts for _ in range(8)], n=8 * len(prompts), seed=0), 8)).save(
        out / "grid.png")
    (out / "bench.json").write_text(json.dumps({"row": row, "report": report}, indent=2, default=float))
    return row


def table(row: dict) -> str:
    acc = " / ".join(f"{k} {v:.1%}" for k, v in row["caption_accuracy"].items())
    floor, used = row["feature_fd_floor"], row["codes_used"]
    lines = ["| data (route) | minutes (stage 1 + model s) | caption accuracy (all) | feature-FD (floor) | codes used | "
             "img/s b1 | img/s b64 | 16 images s |", "|---|---|---|---|---|---|---|---|",
             f"| {row['data']} ({row['route']}) | {row['minutes']:g} ({row['stage1_seconds']:.0f} + "
             f"{row['prior_seconds']:.0f}) | {acc} | {row['feature_fd']:.2f} ({floor:.2f}) | "
             f"{'-' if used is None else f'{used:.0%}'} | {row['img_per_s_batch1']:.1f} | "
             f"{row['img_per_s_batch64']:.1f} | {row['seconds_16_images']:.2f} |"]
    if row.get("recon_ceiling"):
        lines += ["", "judge on the tokenizer's reconstructions (all attributes): " + " / ".join(
            f"{k} {v:.1%}" for k, v in row["recon_ceiling"].items())]
    if row["sweep"]:
        splits = next(iter(row["sweep"].values()))
        lines += ["", "| guidance | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
        lines += [f"| {g:g} | " + " | ".join(f"{v:.1%}" for v in accs.values()) + " |"
                  for g, accs in row["sweep"].items()]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="mnist", help="a data-set name (mnist, shapes) or path")
    p.add_argument("--route", choices=("dalle", "gan"), default="dalle",
                   help="dalle: VQ-VAE + transformer prior (text2image); gan: a caption GAN (captiongan)")
    p.add_argument("--minutes", type=float, nargs="+", default=[10.0, 30.0], help="training budgets, both stages")
    p.add_argument("--stage1-share", type=float, default=0.3, help="share of each budget for the tokenizer")
    p.add_argument("--n", type=int, default=1000, help="images per caption set in the evaluation")
    p.add_argument("--sweep-n", type=int, default=300, help="images per caption set at each guidance scale")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0, 5.0], help="the DALL-E route's sweep")
    p.add_argument("--guidance-from", type=int, default=0, help="the prior's prior.guidance_from")
    p.add_argument("--positions", choices=("auto", "1d", "2d"), default="auto", help="the prior's prior.positions")
    p.add_argument("--judge-steps", type=int, default=0, help="feature network / judge training steps; 0 = theirs")
    p.add_argument("--threads", type=int, default=int(os.environ.get("GENFORGE_THREADS", "0")), help="0 = torch's")
    p.add_argument("--out", default="runs/bench-t2i")
    args = p.parse_args()
    for minutes in args.minutes:
        row = bench(args, minutes)
        print(json.dumps(row, default=float), flush=True)
        print(table(row), flush=True)


if __name__ == "__main__":
    main()
