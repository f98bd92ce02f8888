"""The imageclf family: train, cross-validate, evaluate and apply image classifiers (CNN, ResNet).

    genforge train imageclf --data mnist [--preset cnn|resnet] [--aug.crop=2 --aug.rotate=10]
    genforge train imageclf --data mnist --data.extra=synth/ --data.extra_weight=0.5   # real + synthetic
    genforge train imageclf --data mnist --data.fraction=0.01 --data.seed=1             # 1% of the real labels
    genforge eval RUN [--data PATH]      genforge classify RUN a.png b.png
    genforge cv --family imageclf --data mnist --folds 5

Data (`splits`): the real set (--data: IDX, class folders, .npz, 'shapes', or a name in
$GENFORGE_DATASETS) gives the training, validation and test images; validation is a stratified
`data.val_fraction` of its training split and test its own test split (IDX t10k, a Keras .npz),
else a seeded `data.test_fraction` hold-out. `data.fraction` keeps a stratified share of the real
training images (after validation is taken out), chosen by `data.seed` alone: the same images for
the same seed whatever else changes, and a smaller fraction's images are inside a larger one's.
`data.extra` (a class-folder set or .npz, e.g. `genforge synth` output) only ever adds training
images: `data.extra_weight` W is the share of every training batch drawn from it (W = 1: train on
it alone, the Classification Accuracy Score set-up); validation and test stay real.

Training reuses the text classifier's task (`classifier.ClassifierTask`: AdamW, class weights,
L1, selection and early stopping on validation) with image batches, article 004's augmentation on
training batches only (models/imageclf.augment), the temperature fitted on validation, then every
metric on validation and test in RUN/eval/{val,test}/ (metrics.json, roc.png, confusion.png). The
test accuracy is RUN/eval.json's `test_accuracy` and the last metrics.jsonl row's
`eval/test_accuracy` (the synthetic-data evaluation reads it).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoint, config
from ..data import images as image_data
from ..data.labelled import stratified_split
from ..data.shards import Shares
from ..metrics.protocol import resolve_dataset
from ..models.imageclf import ImageClassifier, ImageClassifierConfig, augment
from ..models.classifier import probabilities
from ..run import RunDir, find_checkpoint
from ..runtime import Runtime, make_runtime
from ..trainer import Result, Trainer, TrainConfig
from . import base, classify
from .classifier import ClassifierTask, FitConfig, predict

FAMILY = "imageclf"
DESCRIPTION = "image classifiers: a small CNN and a ResNet, with augmentation and extra (synthetic) data"
METRICS = {"val_loss": "validation loss", "val_error": "validation error"}


@dataclass
class ImageClassifierDataConfig:
    path: str = ""  # real data: IDX file/folder, class folders, .npz, a name in $GENFORGE_DATASETS; '' = 8x8 digits
    val_fraction: float = 0.1  # stratified share of the real training split held out for validation
    test_fraction: float = 0.1  # held out for testing when the source has no test split of its own
    fraction: float = 1.0  # stratified share of the real training images trained on (see the docstring)
    seed: int = 0  # the validation split, the test hold-out and the `fraction` subset
    extra: str = ""  # extra training images (class folders or .npz, e.g. synthetic); never validation or test
    extra_weight: float = 0.5  # with extra: the share of every training batch drawn from it, in (0, 1]
    max_bad: float = 0.01  # share of corrupt images skipped (with a warning) before it is an error

    def validate(self):
        if not (0.0 <= self.val_fraction < 1.0 and 0.0 < self.test_fraction < 1.0):
            raise ValueError("data.val_fraction must be in [0, 1) and data.test_fraction in (0, 1)")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"data.fraction must be in (0, 1], got {self.fraction}")
        if not 0.0 < self.extra_weight <= 1.0:
            raise ValueError(f"data.extra_weight must be in (0, 1] (the share of each batch from data.extra), "
                             f"got {self.extra_weight}")


@dataclass
class AugmentConfig:
    crop: int = 0  # random crop: pad by this many pixels and crop back (shifts up to ±crop); 0 = off
    rotate: float = 0.0  # random rotation by up to ± this many degrees; 0 = off
    flip: bool = False  # random horizontal flip (leave off for digits and text)

    def validate(self):
        if self.crop < 0 or not 0.0 <= self.rotate <= 180.0:
            raise ValueError(f"aug.crop must be >= 0 and aug.rotate in [0, 180], got {self.crop}, {self.rotate}")


def sections() -> dict[str, Any]:
    return {"model": ImageClassifierConfig(), "data": ImageClassifierDataConfig(), "aug": AugmentConfig(),
            "fit": FitConfig(epochs=3), "train": TrainConfig(batch_size=64, lr=2e-3, min_lr=2e-5, warmup_iters=0,
                                                              weight_decay=1e-4, log_interval=50, samples=False,
                                                              dtype="fp32")}


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # conv 16 -> pool -> conv 32 -> pool -> dense 128 (BatchNorm, ReLU); MNIST >= 98.5% in 2 epochs on 2 cores
    "cnn": {"model": {"arch": "cnn", "width": 16, "stages": 2, "hidden": 128, "dropout": 0.25}, "fit": {"epochs": 2}},
    # stem 16, three stages of one residual block (16, 32, 64 channels), global average pooling
    "resnet": {"model": {"arch": "resnet", "width": 16, "stages": 3, "blocks": 1, "dropout": 0.0}},
}
DEFAULT_PRESET = "cnn"

# ----------------------------------------------------------------------------- data


@dataclass
class Splits:
    train: image_data.ImageSet  # real training images (the `fraction` subset)
    val: image_data.ImageSet | None
    test: image_data.ImageSet
    extra: image_data.ImageSet | None  # labels already in `labels` order
    labels: list[str]


def source(ref: str, what: str) -> str:
    """A data path or data-set name; 'shapes' (drawn by genforge/data/shapes.py) goes to the loader as it is."""
    return ref if ref == "shapes" else resolve_dataset(ref, what)


def relabel(data: image_data.ImageSet, labels: list[str], what: str) -> image_data.ImageSet:
    """`data` with its labels as indices into `labels`, matched by class name."""
    if data.labels is None:
        raise ValueError(f"{what} {data.source}: no labels (use class sub-folders, an IDX label file or 'labels' "
                         "in the .npz)")
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted(set(data.class_names) - set(index))
    if unknown:
        raise ValueError(f"{what} {data.source}: classes {unknown[:5]} are not among the model's classes "
                         f"({', '.join(labels[:10])})")
    lookup = np.array([index[n] for n in data.class_names], dtype=np.int64)
    return image_data.ImageSet(data.images, lookup[data.labels], list(labels), data.source)


def splits(dc: ImageClassifierDataConfig, mc: ImageClassifierConfig) -> Splits:
    """The real training (`fraction` subset), validation and test images, and the extra images."""
    path = source(dc.path, "data.path")

    def load(p: str, split: str, test_fraction: float) -> image_data.ImageSet:
        return image_data.load(p, mc.image_size, mc.channels, split, test_fraction, dc.seed, dc.max_bad)
    full = load(path, "train", dc.test_fraction)
    labels = list(full.class_names)
    full = relabel(full, labels, "data.path")
    if len(labels) < 2:
        raise ValueError(f"data.path {full.source}: one class only; a classifier needs at least two")
    test = relabel(load(path, "test", dc.test_fraction), labels, "data.path (test split)")
    train_idx, val = np.arange(len(full)), None
    if dc.val_fraction > 0:
        train_idx, val_idx = stratified_split(full.labels, dc.val_fraction, dc.seed)
        val = full.subset(val_idx, f"{full.source} (validation)")
    if dc.fraction < 1.0:  # the first `fraction` of each class's seeded permutation: nested across fractions
        _, keep = stratified_split(full.labels[train_idx], dc.fraction, dc.seed)
        train_idx = train_idx[keep]
    extra = relabel(load(source(dc.extra, "data.extra"), "train", 0.0), labels, "data.extra") \
        if dc.extra else None
    return Splits(full.subset(train_idx, f"{full.source} (train)"), val, test, extra, labels)


class ImageBatches:
    """uint8 images as model inputs: `batch(idx)` -> [float (B, C, H, W) in [-1, 1]], augmented when
    `gen` is set (training batches only, drawn from the trainer's checkpointed generator)."""

    def __init__(self, images: np.ndarray, aug: AugmentConfig | None = None):
        self.x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (N, C, H, W) uint8
        self.aug, self.gen = aug, None

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, idx: torch.Tensor) -> list[torch.Tensor]:
        x = self.x[idx].float().div(127.5).sub(1.0)
        if self.gen is not None:
            x = augment(x, self.gen, self.aug.crop, self.aug.rotate, self.aug.flip)
        return [x]


class MixedOrder:
    """Batch indices over real examples 0..n_real-1 and extra ones n_real..: round(weight * size) of
    every batch from the extra examples, the rest real, each in its own seeded epoch order (a new
    permutation when the next part would run past its end, so every batch is full)."""

    def __init__(self, n_real: int, n_extra: int, weight: float, gen: torch.Generator,
                 shares: Shares | None = None):
        self.n_real, self.weight = n_real, weight if n_extra else 0.0
        self.orders = {k: base.EpochOrder(n, gen, drop_last=True, shares=shares) for k, n in (("real", n_real), ("extra", n_extra))
                       if n}

    def next(self, size: int) -> torch.Tensor:
        k = size if "real" not in self.orders else round(self.weight * size)
        parts = [self.orders["real"].next(size - k)] if size > k else []
        return torch.cat(parts + ([self.orders["extra"].next(k) + self.n_real] if k else []))

    def state(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name, order in self.orders.items() for k, v in order.state().items()}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        for name, order in self.orders.items():
            order.set_state({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")})


class ImageClassifierTask(ClassifierTask):
    """The text classifier's task over image batches, mixing real and extra images per batch."""
    item_name = "img"

    def __init__(self, model: ImageClassifier, train_x: ImageBatches, train_y: torch.Tensor, val_x, val_y,
                 labels: list[str], cfg: dict[str, Any], rt: Runtime, n_real: int):
        super().__init__(model, train_x, train_y, val_x, val_y, None, labels, cfg, rt, {})
        self.n_real = n_real

    def bind(self, trainer: Trainer) -> None:
        self.trainer = trainer
        a: AugmentConfig = self.cfg["aug"]
        if a.crop or a.rotate or a.flip:
            self.train_x.gen = trainer.generator
        self.order = MixedOrder(self.n_real, len(self.train_y) - self.n_real, self.cfg["data"].extra_weight,
                                trainer.generator, trainer.shares)

    def meta(self) -> dict[str, Any]:
        return {"family": FAMILY, "config": config.to_dict(self.cfg), "labels": self.labels}

# ----------------------------------------------------------------------------- training


def fit(cfg: dict[str, Any], run: RunDir, train_set: image_data.ImageSet, val_set: image_data.ImageSet | None,
        extra: image_data.ImageSet | None, labels: list[str], resume: bool = False, progress: bool = True,
        preset: str | None = None) -> Result:
    """Train on in-memory images (used by `train` and by each fold of `cross_validate`), then calibrate."""

    def build(rt: Runtime) -> base.Build:
        mc = cfg["model"] = config.update(cfg["model"], {"num_classes": len(labels)}, "model")
        only_extra = extra is not None and cfg["data"].extra_weight == 1.0
        real = [] if only_extra else [train_set]
        pool = real + ([extra] if extra is not None else [])
        images = np.concatenate([d.images for d in pool])  # (N, H, W, C) real first, then extra
        y = torch.from_numpy(np.concatenate([d.labels for d in pool]))
        if not resume:
            classify.epochs_to_steps(cfg, len(y))
        model = ImageClassifier(mc)
        val_x = ImageBatches(val_set.images) if val_set is not None else None
        val_y = torch.from_numpy(val_set.labels) if val_set is not None else None
        n_real = 0 if only_extra else len(train_set)
        mix = "" if extra is None else f" + {len(extra):,} extra ({cfg['data'].extra_weight:.0%} of each batch)"
        banner = (f"{mc.arch} image classifier with {model.num_params() / 1e6:.2f}M parameters, {len(labels)} classes, "
                  f"{n_real:,} real train{mix} / {len(val_y) if val_y is not None else 0:,} val images "
                  f"{mc.image_size}x{mc.image_size}x{mc.channels}, {cfg['train'].max_iters} steps")
        task = ImageClassifierTask(model, ImageBatches(images, cfg["aug"]), y, val_x, val_y, labels, cfg, rt, n_real)
        return base.Build(task, banner, config={"labels": labels, "preset": preset})

    result = base.launch(FAMILY, cfg, run, build, resume, progress)
    if run.is_main and val_set is not None:
        ckpt = find_checkpoint(run.path)
        pipe = ImageClassifierPipeline.from_checkpoint(ckpt, device=cfg["train"].device)
        classify.calibrate_checkpoint(ckpt, pipe.scores(val_set.images), torch.from_numpy(val_set.labels),
                                      cfg["fit"].calibrate, "images")
    return result


def _resolve(preset: str | None, overrides: dict | None, run: RunDir, resume: bool) -> dict[str, Any]:
    return base.resolve(sections(), PRESETS, preset or (None if resume else DEFAULT_PRESET), overrides or {}, run,
                        resume)


def train(preset: str | None = None, overrides: dict | None = None, out: str | None = None,
          resume: bool = False, init_from: str | None = None, progress: bool = True) -> tuple[RunDir, Result]:
    """Train (or resume) an image classifier; evaluate its best checkpoint on the real validation and test
    images; RUN/eval.json holds `test_accuracy`."""
    if init_from:
        raise NotImplementedError("--init-from is not supported for image classifiers yet; train from scratch")
    run = base.run_dir(out, FAMILY)
    cfg = _resolve(preset, overrides, run, resume)
    s = splits(cfg["data"], cfg["model"])
    result = fit(cfg, run, s.train, s.val, s.extra, s.labels, resume=resume, progress=progress, preset=preset)
    if run.is_main:
        pipe = ImageClassifierPipeline.from_checkpoint(run.path, device=cfg["train"].device)
        val = pipe.evaluate_set(s.val, run.file("eval") / "val") if s.val is not None else None
        test = pipe.evaluate_set(s.test, run.file("eval") / "test")
        summary = {"test_accuracy": test["accuracy"], "test_macro_f1": test["macro"]["f1"], "test_ece": test["ece"],
                   "test_log_loss": test["log_loss"], "val_accuracy": val["accuracy"] if val else None,
                   "step": result.step, "n_train_real": 0 if s.extra is not None and cfg["data"].extra_weight == 1
                   else len(s.train), "n_train_extra": len(s.extra) if s.extra is not None else 0,
                   "n_val": len(s.val) if s.val is not None else 0, "n_test": test["n"], "data": cfg["data"].path,
                   "extra": cfg["data"].extra, "extra_weight": cfg["data"].extra_weight, "fraction": cfg["data"].fraction}
        run.write_json("eval.json", summary)
        row = {"step": result.step, **{f"eval/{k}": summary[k] for k in ("test_accuracy", "test_macro_f1", "test_ece")}}
        with open(run.file("metrics.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"genforge: test accuracy {test['accuracy']:.4f} on {test['n']:,} real test images "
              f"({run.file('eval.json')})", file=sys.stderr)
    return run, result


def cross_validate(preset: str | None = None, overrides: dict | None = None, folds: int = 5,
                   out: str | None = None, init_from: str | None = None, progress: bool = False) -> dict:
    """k-fold stratified cross-validation over the real training split (extra images, if any, join every
    fold's training); returns per-fold metrics and the mean and std of each (ROOT/cv.json)."""
    if init_from:
        raise NotImplementedError("--init-from is not supported for image classifiers yet")
    root = Path(out) if out else RunDir.default("cv").path
    cfg0 = _resolve(preset, overrides, RunDir(root), False)
    if cfg0["data"].fraction < 1.0:
        raise ValueError("data.fraction: cross-validation uses the whole training split; leave it at 1")
    s = splits(config.update(cfg0["data"], {"val_fraction": 0.0}, "data"), cfg0["model"])

    def run_fold(k: int, train_idx, val_idx, test_idx) -> dict:
        run = RunDir(root / f"fold{k + 1}")

        def part(idx, name: str) -> image_data.ImageSet:
            return s.train.subset(idx, f"{s.train.source} ({name}, fold {k + 1})")
        val = part(val_idx, "validation") if val_idx is not None else None
        fit(_resolve(preset, overrides, run, False), run, part(train_idx, "train"), val, s.extra, s.labels,
            progress=progress, preset=preset)
        pipe = ImageClassifierPipeline.from_checkpoint(run.path, device=cfg0["train"].device)
        return pipe.evaluate_set(part(test_idx, "held out"), out=run.file("eval") / "heldout")

    return classify.cross_validate(s.train.labels, folds, cfg0["train"].seed, cfg0["data"].val_fraction, root,
                                   s.labels, run_fold)

# ----------------------------------------------------------------------------- inference


class ImageClassifierPipeline:
    """A trained image classifier: `predict_proba(images)`, `classify(images)`, `evaluate(path)`.

    Images are uint8 (N, H, W, C) at the model's size and channels (`image_size`, `channels`);
    `read_images` decodes files or bytes into that, resizing. Probabilities are calibrated with the
    temperature fitted on validation (`meta['calibration']`, T = 1 when absent)."""

    family = FAMILY

    def __init__(self, model: ImageClassifier, meta: dict[str, Any], runtime: Runtime, batch_size: int = 256):
        self.model, self.meta, self.rt, self.batch_size = model, meta, runtime, batch_size
        self.labels: list[str] = list(meta["labels"])
        self.image_size, self.channels = model.config.image_size, model.config.channels
        self.temperature = classify.temperature(meta)

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", dtype: str = "fp32") -> ImageClassifierPipeline:
        tensors, meta, _ = base.load_run(path, FAMILY, prefix="module.model")
        model = ImageClassifier(config.from_dict(ImageClassifierConfig, meta["config"]["model"], "model"))
        checkpoint.load_module(model, tensors)
        rt = make_runtime(device, dtype)
        model.to(rt.device).eval()
        return cls(model, meta, rt, meta["config"]["fit"]["eval_batch"])

    def _check(self, images) -> np.ndarray:
        shape = (self.image_size, self.image_size, self.channels)
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape[1:] != shape:
            got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"images: expected uint8 (N, {', '.join(map(str, shape))}), got {got} "
                             "(read_images resizes files to the model's size)")
        return images

    def scores(self, images: np.ndarray) -> torch.Tensor:
        """Uncalibrated logits (N, K); `probabilities(scores / temperature)` are the outputs."""
        return predict(self.model, ImageBatches(self._check(images)), self.rt, self.batch_size)

    def predict_proba(self, images: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """(N, K) probabilities, columns in the order of `labels` (raw with calibrated=False)."""
        if len(self._check(images)) == 0:
            return np.zeros((0, len(self.labels)))
        return probabilities(self.scores(images) / (self.temperature if calibrated else 1.0)).numpy()

    def classify(self, images: np.ndarray) -> list[dict]:
        """[{'label': most likely class, 'probs': {class: probability}}] for each image."""
        return [{"label": self.labels[int(p.argmax())], "probs": {c: float(v) for c, v in zip(self.labels, p)}}
                for p in self.predict_proba(images)]

    def read_images(self, blobs: list[bytes], names: list[str]) -> np.ndarray:
        """Encoded images (PNG, JPEG, ...) -> uint8 (N, H, W, C) at the model's size; errors name `names[i]`."""
        shape = (len(blobs), self.image_size, self.image_size, self.channels)
        out = np.empty(shape, np.uint8)
        for i, (blob, name) in enumerate(zip(blobs, names)):
            out[i] = image_data.decode(blob, self.image_size, self.channels, name)
        return out

    def evaluate_set(self, data: image_data.ImageSet, out: Path | None = None) -> dict:
        """Every metric of metrics/classification.py on labelled images (labels in `labels` order)."""
        return classify.report(data.labels, self.scores(data.images), self.temperature, self.labels, out,
                               data=data.source)

    def evaluate(self, path: str, split: str = "test", out: str | Path | None = None) -> dict:
        """Every metric on the `split` of the labelled images at `path` (split as in training: the source's
        own test split, else the run's seeded hold-out); classes are matched to the run's by name."""
        d = self.meta["config"]["data"]
        data = image_data.load(source(path, "--data"), self.image_size, self.channels, split,
                               d["test_fraction"], d["seed"], d["max_bad"])
        return self.evaluate_set(relabel(data, self.labels, "--data"), out)


def pipeline_from_checkpoint(path, device: str = "auto", dtype: str = "fp32") -> ImageClassifierPipeline:
    return ImageClassifierPipeline.from_checkpoint(path, device=device, dtype=dtype)

# ----------------------------------------------------------------------------- CLI and server answers


def next_steps(run: Path) -> list[str]:
    return [f"genforge classify {run} image.png", f"genforge eval {run}"]


def sample_command(pipe: ImageClassifierPipeline, args: argparse.Namespace) -> int:
    raise ValueError(f"{args.run}: an image classifier makes no samples; try: genforge classify {args.run} image.png")


def eval_command(args: argparse.Namespace) -> int:
    """`genforge eval RUN [--data PATH]`: every metric on the test split of PATH (default: the run's data), as
    JSON; metrics.json, roc.png and confusion.png in RUN/eval/<data name>/."""
    pipe = ImageClassifierPipeline.from_checkpoint(args.run, device=args.device)
    data = args.data if args.data is not None else pipe.meta["config"]["data"]["path"]
    run = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent.parent
    out = run / "eval" / (Path(data).name.split(".")[0] or "data")
    print(json.dumps(pipe.evaluate(data, out=out), indent=2))
    print(f"genforge: metrics.json, roc.png and confusion.png are in {out}", file=sys.stderr)
    return 0


def model_info(pipe: ImageClassifierPipeline) -> dict[str, Any]:
    return {"labels": list(pipe.labels), "image_size": pipe.image_size, "channels": pipe.channels}
