"""The feature network behind the image metrics: a small CNN classifier, trained once per data set.

Inception weights cannot be downloaded here, and ImageNet features are the wrong ones for digits or
faces, so genforge trains this classifier on the data set's training split, freezes it and caches
it under `$GENFORGE_CACHE/feature_nets/`, named by a hash of the training images, labels and
recipe: the same data always gives the same network, so numbers stay comparable between runs.
Its 128-d penultimate layer gives the features; its predictions give class histograms and label
accuracy. A data set without labels gets a seeded, untrained network of the same shape
(`random-cnn`); its numbers are still consistent, but weaker. The id of the network is reported
beside every number: never compare these distances with Inception FID.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import checkpoint
from ..data.images import ImageSet
from ..data.text import cache_dir

RECIPE = "feature-cnn/1"  # bump when the architecture or training recipe changes
FEATURE_DIM = 128


class FeatureCNN(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, H/2, W/2)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, H/4, W/4)
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())  # (B, 2048)
        self.fc = nn.Linear(128 * 16, FEATURE_DIM)
        self.out = nn.Linear(FEATURE_DIM, max(num_classes, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.convs(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1]."""
    x = torch.as_tensor(np.asarray(images))
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


@dataclass
class FeatureNet:
    model: FeatureCNN
    id: str  # e.g. 'feature-cnn/1:3f2a9c0d1b2e' (recipe and content hash)
    num_classes: int  # 0 for the untrained network of an unlabelled set
    class_names: list[str]
    test_accuracy: float | None  # accuracy on the real test split (the label-accuracy floor)

    @torch.no_grad()
    def embed(self, images: np.ndarray, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, H, W, C) -> (features (N, 128) float32, predicted class (N,) int64)."""
        self.model.eval()
        feats, preds = [], []
        for i in range(0, len(images), batch):
            h = self.model.features(to_input(images[i:i + batch]))
            feats.append(h.numpy())
            preds.append(self.model.out(h).argmax(1).numpy())
        return np.concatenate(feats), np.concatenate(preds)


def content_hash(data: ImageSet, steps: int, seed: int) -> str:
    h = hashlib.sha256(f"{RECIPE}|{data.images.shape}|{steps}|{seed}".encode())
    h.update(np.ascontiguousarray(data.images).tobytes())
    if data.labels is not None:
        h.update(np.ascontiguousarray(data.labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:12]


def _train(model: FeatureCNN, data: ImageSet, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x_all, y_all = torch.as_tensor(data.images), torch.as_tensor(data.labels)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    model.train()
    batch = min(128, len(data))
    for _ in range(steps):
        idx = torch.randint(0, len(data), (batch,), generator=g)
        x = to_input(x_all[idx])
        shift = [int(s) for s in torch.randint(-2, 3, (2,), generator=g)]  # small translations
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        loss = F.cross_entropy(model(x), y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()


def get(train: ImageSet, test: ImageSet | None = None, steps: int = 0, seed: int = 0,
        verbose: bool = True) -> FeatureNet:
    """The frozen feature network for this training set: from the cache, or trained now and cached.

    steps=0 picks two epochs, between 300 and 1500 steps of 128 images.
    """
    channels = train.images.shape[-1]
    labelled = train.labels is not None and train.num_classes > 1
    if steps <= 0:
        steps = min(1500, max(300, 2 * len(train) // 128))
    key = content_hash(train, steps if labelled else 0, seed)
    ident = f"{RECIPE}:{key}" if labelled else f"random-cnn/1:{key}"
    path = cache_dir() / "feature_nets" / f"{key}.safetensors"
    model = FeatureCNN(channels, train.num_classes if labelled else 1)
    if path.exists():
        tensors, meta = checkpoint.load(path, prefix="module.net")
        model.load_state_dict(tensors)
        model.eval().requires_grad_(False)
        net = FeatureNet(model, ident, meta["num_classes"], meta["class_names"], meta["test_accuracy"])
        if net.test_accuracy is None and net.num_classes and test is not None and test.labels is not None:
            net.test_accuracy = float((net.embed(test.images)[1] == test.labels).mean())  # cached by a test-free caller
        return net
    torch.manual_seed(seed)
    model = FeatureCNN(channels, train.num_classes if labelled else 1)
    if labelled:
        if verbose:
            print(f"genforge: training the evaluation feature network {ident} on {len(train):,} images "
                  f"({steps} steps; cached for later runs)", file=sys.stderr)
        _train(model, train, steps, seed)
    model.eval().requires_grad_(False)
    net = FeatureNet(model, ident, train.num_classes if labelled else 0, list(train.class_names) if labelled else [], None)
    if labelled and test is not None and test.labels is not None:
        _, pred = net.embed(test.images)
        net.test_accuracy = float((pred == test.labels).mean())
    checkpoint.save(path, checkpoint.module_tensors("module.net", model),
                    {"family": "feature-net", "id": ident, "num_classes": net.num_classes,
                     "class_names": net.class_names, "test_accuracy": net.test_accuracy})
    return net
