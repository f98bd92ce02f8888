"""GAN benchmark on MNIST: training images/s and quality after 2, 5 and 10 minute budgets.

    GENFORGE_DATASETS=../shared/datasets python benchmarks/gan.py --presets dcgan-hinge-sn cdcgan \
        --budgets 120 300 600 --threads 1 --out runs/bench-gan

For each preset: train with a wall-clock budget, score with the full protocol (N generated vs the
N real test images, feature network `feature-cnn/1` trained on MNIST's training split), resume
for the next budget, score again. With --separate every budget is a fresh run whose LR schedule
spans that budget (for presets that decay their LR). The train-vs-test floor is computed once and printed beside
every number. Writes RUN/bench.json per preset and prints one JSON line per (preset, budget).
Training time excludes the scoring; the throughput is the median of the logged img/s.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from genforge.data import images as image_data
from genforge.families import gan
from genforge.metrics import feature_net, protocol


def reference_rate(seconds: float, batch: int = 64) -> float:
    """img/s of a PyTorch-GAN-style dcgan.py step (32 px, upsample+conv G, BCE, fp32), same process.

    The layout follows that script's published architecture (G: Linear 100 -> 128*8*8, two
    upsample + conv 3x3 stages 128 -> 64, conv to 1, tanh; D: four stride-2 conv 3x3 blocks
    16/32/64/128 with dropout and BatchNorm, then a sigmoid). It is timed here so the ratio
    to genforge is measured under the same load on this shared machine.
    """
    nn = torch.nn
    g = nn.Sequential(nn.Linear(100, 128 * 8 * 8), nn.Unflatten(1, (128, 8, 8)), nn.BatchNorm2d(128),
                      nn.Upsample(scale_factor=2), nn.Conv2d(128, 128, 3, padding=1), nn.BatchNorm2d(128, 0.8),
                      nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2), nn.Conv2d(128, 64, 3, padding=1),
                      nn.BatchNorm2d(64, 0.8), nn.LeakyReLU(0.2), nn.Conv2d(64, 1, 3, padding=1), nn.Tanh())
    blocks, cin = [], 1
    for i, cout in enumerate((16, 32, 64, 128)):
        blocks += [nn.Conv2d(cin, cout, 3, 2, 1), nn.LeakyReLU(0.2), nn.Dropout2d(0.25)]
        blocks += [nn.BatchNorm2d(cout, 0.8)] if i else []
        cin = cout
    d = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(128 * 2 * 2, 1), nn.Sigmoid())
    og = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = nn.BCELoss()
    real, ones, zeros = torch.rand(batch, 1, 32, 32) * 2 - 1, torch.ones(batch, 1), torch.zeros(batch, 1)
    n, t0 = 0, None
    while t0 is None or time.perf_counter() - t0 < seconds:
        if t0 is None and n == 3:
            t0, n = time.perf_counter(), 0  # after warm-up
        fake = g(torch.randn(batch, 100))
        og.zero_grad()
        bce(d(fake), ones).backward()
        og.step()
        od.zero_grad()
        ((bce(d(real), ones) + bce(d(fake.detach()), zeros)) / 2).backward()
        od.step()
        n += 1
    return n * batch / (time.perf_counter() - t0)


def throughput(run: Path) -> float:
    rates = [json.loads(line).get("train/img_per_s") for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r for r in rates if r is not None]
    return statistics.median(rates[1:] if len(rates) > 1 else rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=os.path.join(os.environ.get("GENFORGE_DATASETS", "../shared/datasets"), "mnist"))
    p.add_argument("--presets", nargs="+", default=list(gan.PRESETS))
    p.add_argument("--budgets", nargs="+", type=float, default=[120, 300, 600], help="cumulative seconds")
    p.add_argument("--n", type=int, default=10000, help="images per side in the protocol")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/bench-gan")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                   help="extra overrides for every preset, e.g. --set train.schedule=linear gan.ema=0.9995")
    p.add_argument("--separate", action="store_true",
                   help="one fresh run per budget with the LR decayed over that budget (train.time_schedule), "
                        "instead of resuming one run; for presets whose LR schedule depends on the budget")
    p.add_argument("--reference-seconds", type=float, default=30.0, help="timing of the reference step per preset")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    train = image_data.load(args.data, 28, 1, "train")
    test = image_data.load(args.data, 28, 1, "test")
    net = feature_net.get(train, test)
    t0 = time.perf_counter()
    floor = protocol.score(net, protocol._subsample(train, args.n, 1).images, test, n=args.n)
    print(json.dumps({"floor": {k: v for k, v in floor.items() if k != "class_histogram"},
                      "label_accuracy_floor": net.test_accuracy, "seconds": time.perf_counter() - t0}), flush=True)

    from genforge import config
    extra = config.parse_overrides(["--" + a.lstrip("-") for a in args.set])
    for preset in args.presets:
        done, rows = 0.0, []
        ref_rate = reference_rate(args.reference_seconds)
        print(json.dumps({"preset": preset, "reference_img_per_s": ref_rate}), flush=True)
        for budget in args.budgets:
            run = Path(args.out) / (f"{preset}-{budget:g}s" if args.separate else preset)
            if args.separate:
                done = 0.0
            # a resumed run counts the training seconds it restores, so max_seconds is cumulative
            ov = {"data": {"path": args.data}, "train": {"max_iters": 10**9, "max_seconds": budget,
                                                          "threads": args.threads, "eval_interval": 2000,
                                                          "log_interval": 50}}
            if args.separate:
                ov["train"]["time_schedule"] = True
            for section, values in extra.items():
                ov.setdefault(section, {}).update(values)
            _, result = gan.train(preset if done == 0 else None, ov, str(run), resume=done > 0, progress=False)
            done = budget
            pipe = gan.GANPipeline.from_checkpoint(run / "checkpoints" / "last.safetensors")  # newest, not 'best'
            saved = json.loads((run / "config.json").read_text())["config"]
            requested = (torch.arange(args.n) % pipe.num_classes).numpy() if pipe.num_classes else None
            t1 = time.perf_counter()
            fake = pipe.generate(args.n, seed=0, labels=None if requested is None else requested.tolist())
            rep = protocol.score(net, fake, test, None, requested, n=args.n)
            row = {"preset": preset, "budget_s": budget, "step": result.step,
                   "images_seen": result.step * saved["train"]["batch_size"] * saved["gan"]["n_critic"],
                   "img_per_s": throughput(run), "reference_img_per_s": ref_rate,
                   "speed_ratio": throughput(run) / ref_rate, "score_seconds": time.perf_counter() - t1,
                   **{k: v for k, v in rep.items() if k != "class_histogram"},
                   "class_histogram": rep.get("class_histogram")}
            rows.append(row)
            print(json.dumps(row), flush=True)
            (run / "bench.json").write_text(json.dumps({"floor": floor, "rows": rows}, indent=2))
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
