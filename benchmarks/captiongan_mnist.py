"""Does the caption condition the digit? A short captiongan run on MNIST, read back by the feature network.

    GENFORGE_DATASETS=../shared/datasets python benchmarks/captiongan_mnist.py --seconds 300 --out runs/cg-mnist

Trains the `captiongan` preset on MNIST (captions from the training templates of
genforge/data/templates.py) for a wall-clock budget, then generates `--per-prompt` images for every
class and every template of each split (training phrasings, held-out phrasings) and reports the
share the frozen MNIST feature network (genforge/metrics/feature_net.py, the GAN family's judge)
reads as the digit the caption asked for, beside that network's own accuracy on real test digits.
A quality check, not a timing benchmark. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

import genforge
from genforge.data import images as image_data, templates
from genforge.families import captiongan
from genforge.metrics import feature_net


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300, help="training budget (wall clock)")
    p.add_argument("--per-prompt", type=int, default=20, help="images per (class, template)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--preset", default="captiongan")
    p.add_argument("--mismatch", type=float, default=None, help="text.mismatch (default: the preset's)")
    p.add_argument("--out", default="runs/captiongan-mnist")
    a = p.parse_args()
    mnist = os.path.join(os.environ.get("GENFORGE_DATASETS", "../shared/datasets"), "mnist")
    text = {} if a.mismatch is None else {"mismatch": a.mismatch}
    run, result = captiongan.train(a.preset, {
        "data": {"path": mnist}, "text": text, "train": {"max_seconds": a.seconds, "time_schedule": True, "max_iters": 100_000,
                                           "threads": a.threads, "eval_interval": 500}}, out=a.out, progress=False)
    torch.set_num_threads(a.threads)
    pipe = genforge.load(run.path, device="cpu")
    train, test = image_data.load(mnist, 28, 1, "train"), image_data.load(mnist, 28, 1, "test")
    judge = feature_net.get(train, test, verbose=False)
    report = {"run": str(run.path), "steps": result.step, "judge_test_accuracy": judge.test_accuracy}
    for split in ("train", "held_out"):
        hits = total = 0
        for k, captions in enumerate(templates.prompts(train.class_names, split)):
            prompts = [c for c in captions for _ in range(a.per_prompt)]
            _, predicted = judge.embed(pipe.generate(prompts, n=len(prompts), seed=k))
            hits, total = hits + int((predicted == k).sum()), total + len(prompts)
        report[f"caption_accuracy_{split}"] = hits / total
    print(json.dumps(report))


if __name__ == "__main__":
    main()
