"""Evaluate-while-training for any image generator: a seeded sample grid, and scores on the frozen feature net.

    genforge train gan --data ../shared/datasets/mnist --preset cdcgan   # GANTask.evaluate / on_eval use it

    scorer = TrainingImageScorer(generate, net, test, num_classes=10, n=1000, seed=1337)
    scorer.scores()                                  # {'class_entropy', 'label_accuracy', 'feature_fd'}
    scorer.write_grid(step, monitor, run.file("samples"))   # RUN/samples/step000500.png + TensorBoard

The generator is reached only through `generate(n, seed=..., labels=...) -> uint8 (n, H, W, C)`,
the same call as a pipeline's `generate`: a GAN task passes its (EMA) generator's sampler, a
text-to-image task a callable that turns each label into a caption. Every call uses the same
seed, so successive evaluations score the same noise (and the same prompts) and move only with
the weights. The numbers are the training-time subset of `protocol.score`: class entropy of the
predicted classes (mode collapse), label accuracy of the requested classes, and the feature
Fréchet distance to at most `test_images` real test images (their features computed once).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..data.images import ImageSet
from ..images import make_grid, to_pil
from . import stats
from .feature_net import FeatureNet

if TYPE_CHECKING:
    from ..monitor import Monitor


class GenerateImages(Protocol):
    def __call__(self, n: int, *, seed: int, labels: np.ndarray | None) -> np.ndarray:
        """n images as uint8 (n, H, W, C) for `labels` int64 (n,); labels None: the generator's own choice
        (unconditional, or e.g. held-out captions for a text-to-image model without classes)."""
        ...


class TrainingImageScorer:
    """Scores and sample grids of a generator during training, always from the same seed.

    generate     the generator, as `generate(n, seed=, labels=)` (see `GenerateImages`)
    net          the frozen feature network; None = no scores (an unlabelled data set), grids only
    test         real test images for the feature Fréchet distance; None = no distance
    num_classes  classes the generator is conditioned on; 0 = unconditional (no labels are passed)
    n            images scored per evaluation; 0 = no scores
    seed         the seed of every call to `generate`
    """

    def __init__(self, generate: GenerateImages, net: FeatureNet | None, test: ImageSet | None,
                 num_classes: int = 0, n: int = 1000, seed: int = 0, test_images: int = 2000,
                 grid_cols: int = 8, grid_rows: int = 8, max_class_rows: int = 10):
        if n < 0 or num_classes < 0 or min(grid_cols, grid_rows, max_class_rows) < 1:
            raise ValueError("TrainingImageScorer: n and num_classes must be >= 0, the grid sizes >= 1")
        self.generate, self.net, self.test = generate, net, test
        self.num_classes, self.n, self.seed = num_classes, n, seed
        self.test_images = test_images
        self.grid_cols, self.grid_rows, self.max_class_rows = grid_cols, grid_rows, max_class_rows
        self._test_features: np.ndarray | None = None

    def labels(self, n: int) -> np.ndarray | None:
        """The classes requested for n scored images: every class in turn (None if unconditional)."""
        return np.arange(n) % self.num_classes if self.num_classes else None

    def scores(self) -> dict[str, float]:
        """class_entropy (with a labelled net), label_accuracy (conditional) and feature_fd (with test)."""
        if self.net is None or self.n == 0:
            return {}
        labels = self.labels(self.n)
        fake = self.generate(self.n, seed=self.seed, labels=labels)
        feats, pred = self.net.embed(fake)
        out: dict[str, float] = {}
        if self.net.num_classes:
            out["class_entropy"] = stats.class_entropy(pred, self.net.num_classes)
            if labels is not None:
                out["label_accuracy"] = float((pred == labels).mean())
        if self.test is not None:
            if self._test_features is None:
                self._test_features = self.net.embed(self.test.images[:max(self.n, self.test_images)])[0]
            out["feature_fd"] = stats.fd(feats, self._test_features)
        return out

    def grid(self) -> np.ndarray:
        """One uint8 grid image: a row per class (at most max_class_rows), or grid_rows rows unconditionally."""
        rows = min(self.num_classes, self.max_class_rows) if self.num_classes else self.grid_rows
        n = rows * self.grid_cols
        labels = np.arange(n) // self.grid_cols if self.num_classes else None  # row r shows class r
        return make_grid(self.generate(n, seed=self.seed, labels=labels), self.grid_cols)

    def write_grid(self, step: int, monitor: Monitor, folder: str | Path) -> Path:
        """The grid to TensorBoard (tag 'samples') and to folder/stepNNNNNN.png; returns the PNG's path."""
        grid = self.grid()
        monitor.image("samples", grid, step)
        path = Path(folder) / f"step{step:06d}.png"
        to_pil(grid).save(path)
        return path
