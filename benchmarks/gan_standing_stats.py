"""Score one GAN checkpoint twice: with the BatchNorm statistics it holds, then with standing ones.

    GENFORGE_DATASETS=../shared/datasets python benchmarks/gan_standing_stats.py RUN/checkpoints/last.safetensors

The EMA generator of a checkpoint written before genforge re-estimated its statistics holds the
live generator's running statistics; this measures what `Generator.standing_stats()` changes on
the MNIST protocol (10k generated vs the 10k test images, feature network `feature-cnn/1`).
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from genforge.data import images as image_data
from genforge.families import gan
from genforge.metrics import feature_net, protocol


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--data", default=os.path.join(os.environ.get("GENFORGE_DATASETS", "../shared/datasets"), "mnist"))
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    train = image_data.load(args.data, 28, 1, "train")
    test = image_data.load(args.data, 28, 1, "test")
    net = feature_net.get(train, test)
    pipe = gan.GANPipeline.from_checkpoint(args.checkpoint)
    requested = (torch.arange(args.n) % pipe.num_classes).numpy() if pipe.num_classes else None

    def score(tag: str) -> None:
        fake = pipe.generate(args.n, seed=0, labels=None if requested is None else requested.tolist())
        rep = protocol.score(net, fake, test, None, requested, n=args.n)
        print(json.dumps({"statistics": tag, **{k: v for k, v in rep.items() if isinstance(v, float)}}), flush=True)

    score("saved")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pipe.g.standing_stats()
    pipe.g.eval()
    score("standing")


if __name__ == "__main__":
    main()
