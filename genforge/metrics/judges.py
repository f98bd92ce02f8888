"""Judges: frozen networks that read an image and say what it shows, for text-to-image caption accuracy.

    judge = judges.judge_for("shapes", 32, 3)       # an attribute CNN, trained once on real renders, cached
    judge.read(images)   # [{'colour': 'red', 'shape': 'circle', 'size': 'small', 'position': 'top left'}, ...]
    judge.accuracy       # per attribute and 'all', on real test images: how far the judge is to be trusted
    judges.compare(judge.read(images), wanted)      # share of images showing what their captions asked for

MNIST and other labelled sets are read by the data set's feature network (metrics/feature_net.py),
attribute "class". The shapes set is read by an attribute CNN (one head per attribute, and one for
the number of shapes) trained on renders of every colour+kind combination and cached under
$GENFORGE_CACHE/judges/, named by its recipe, the renderer's, the size and the steps.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import checkpoint
from ..data import images as image_data
from ..data import shapes
from ..data.images import ImageSet
from ..data.text import cache_dir
from . import feature_net, protocol

RECIPE = "shape-judge/1"  # bump when the architecture or training recipe changes
STEPS = 1000  # training steps of 128 images
DATA_SEED = 100  # of the judge's training renders; the shapes splits use seeds 0..2
HEADS = {"count": ("one", "two"), "colour": tuple(shapes.COLOURS), "shape": shapes.KINDS, "size": tuple(shapes.SIZES),
         "position": shapes.POSITIONS, "relation": shapes.RELATIONS, "colour2": tuple(shapes.COLOURS),
         "shape2": shapes.KINDS}
ONE_SHAPE = ("colour", "shape", "size", "position")  # the attributes of a one-shape image; two shapes:
TWO_SHAPES = ("colour", "shape", "relation", "colour2", "shape2")


def compare(read: list[dict], wanted: list[dict]) -> dict[str, float]:
    """Per attribute asked for, the share of images read as asked; 'all': every attribute of an image right."""
    if len(read) != len(wanted):
        raise ValueError(f"judge read {len(read)} images for {len(wanted)} captions")
    keys = sorted({k for w in wanted for k in w})
    out = {k: float(np.mean([r.get(k) == w[k] for r, w in zip(read, wanted) if k in w])) for k in keys}
    out["all"] = float(np.mean([all(r.get(k) == v for k, v in w.items()) for r, w in zip(read, wanted)]))
    return out


@dataclass
class ClassJudge:
    """A labelled set's judge: the feature network's predicted class."""
    net: feature_net.FeatureNet

    @property
    def id(self) -> str:
        return self.net.id

    @property
    def accuracy(self) -> dict[str, float]:
        return {"class": self.net.test_accuracy, "all": self.net.test_accuracy}

    def read(self, images: np.ndarray) -> list[dict]:
        _, pred = self.net.embed(images)
        return [{"class": self.net.class_names[int(p)]} for p in pred]


class AttributeCNN(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, H/2, W/2)
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, H/4, W/4)
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),  # (B, 512)
            nn.Linear(32 * 16, 128), nn.ReLU())  # position matters: no global pooling
        self.heads = nn.ModuleDict({name: nn.Linear(128, len(values)) for name, values in HEADS.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(x)
        return {name: head(h) for name, head in self.heads.items()}  # name -> (B, values)


def targets(attrs: list[dict]) -> torch.Tensor:
    """int64 (N, heads): each attribute's value index, -1 where an image has no such attribute."""
    rows = [[HEADS[k].index(a[k]) if k in a else -1 for k in HEADS] for a in attrs]
    for row, a in zip(rows, attrs):
        row[0] = 1 if "relation" in a else 0
    return torch.tensor(rows, dtype=torch.int64)


@dataclass
class ShapesJudge:
    """The shapes set's judge: an attribute CNN, and its accuracy on the real test split."""
    model: AttributeCNN
    id: str
    accuracy: dict[str, float]

    @torch.no_grad()
    def read(self, images: np.ndarray, batch: int = 500) -> list[dict]:
        self.model.eval()
        out = []
        for i in range(0, len(images), batch):
            logits = self.model(feature_net.to_input(images[i:i + batch]))
            pred = {k: v.argmax(1).tolist() for k, v in logits.items()}
            for j in range(len(pred["count"])):
                keys = TWO_SHAPES if pred["count"][j] else ONE_SHAPE
                out.append({k: HEADS[k][pred[k][j]] for k in keys})
        return out


def _train(model: AttributeCNN, data: ImageSet, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.as_tensor(data.images), targets([shapes.attributes(c) for c in data.captions])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data), (min(128, len(data)),), generator=g)
        logits, y = model(feature_net.to_input(x_all[idx])), y_all[idx]  # y: (B, heads)
        loss = sum(F.cross_entropy(logits[k], y[:, h], ignore_index=-1) for h, k in enumerate(HEADS)
                   if (y[:, h] >= 0).any())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def shapes_judge(size: int, channels: int, steps: int = 0, seed: int = 0, verbose: bool = True) -> ShapesJudge:
    """The attribute CNN for shapes at this size and channels: from the cache, or trained now and cached.

    It trains on its own renders of every colour+kind combination, the held-out ones included (it is
    the instrument, not the model under test), as many as the train split; its accuracy is measured
    on the real test split and, separately, on the held-out combinations ('held_out_combos.*').
    """
    steps = steps or STEPS
    n = shapes.SPLIT_SIZES["train"]
    ident = f"{RECIPE}:{shapes.RECIPE}:{n}x{size}x{size}x{channels}:{steps}:{seed}"
    path = cache_dir() / "judges" / f"{ident.replace('/', '-').replace(':', '_')}.safetensors"
    torch.manual_seed(seed)
    model = AttributeCNN(channels)
    if path.exists():
        tensors, meta = checkpoint.load(path, prefix="module.judge")
        checkpoint.load_module(model, tensors, path)
        return ShapesJudge(model.eval().requires_grad_(False), ident, meta["accuracy"])
    if verbose:
        print(f"genforge: training the shapes judge {ident} on {n:,} renders ({steps} steps; cached for later "
              "runs)", file=sys.stderr)
    train = shapes.render_set(n, DATA_SEED, held_out_combos=None)
    train.images = image_data.convert(train.images, size, channels)
    _train(model, train, steps, seed)
    judge = ShapesJudge(model.requires_grad_(False), ident, {})
    for split, prefix in (("test", ""), ("held_out_combos", "held_out_combos.")):
        real = image_data.load("shapes", size, channels, split)
        acc = compare(judge.read(real.images), [shapes.attributes(c) for c in real.captions])
        judge.accuracy.update({prefix + k: v for k, v in acc.items()})
    checkpoint.save(path, checkpoint.module_tensors("module.judge", model),
                    {"family": "shape-judge", "id": ident, "accuracy": judge.accuracy})
    return judge


def judge_for(data_path: str, size: int, channels: int, test_fraction: float = 0.1, seed: int = 0,
              feature_steps: int = 0, steps: int = 0, net: feature_net.FeatureNet | None = None
              ) -> ClassJudge | ShapesJudge:
    """The judge of a data set at this size and channels: shapes -> ShapesJudge; labelled -> ClassJudge
    (its feature network `net`, if already at hand)."""
    if data_path == "shapes":
        return shapes_judge(size, channels, steps)
    if net is None:
        net = protocol.reference(data_path, size, channels, test_fraction, seed, feature_steps)[2]
    if not net.num_classes:
        raise ValueError(f"{data_path}: no labels, so no judge of what an image shows; caption accuracy needs a "
                         "labelled set (classes) or the shapes set")
    return ClassJudge(net)
