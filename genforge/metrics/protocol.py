"""The evaluation protocol for generated images: N generated vs N real test images, floor beside each.

    genforge eval RUN [--n 10000]                       # a GAN run (or any ImagePipeline)
    genforge eval --samples DIR|FILE.npz --ref PATH|NAME [--n 10000]

Every number comes with its *floor*: the same metric between N real training images and the
real test images, i.e. what a perfect generator that memorised nothing would score. A generator
is good when its numbers approach the floor. Features come from `feature_net`, named in the
report as `feature_net`; the Fréchet distance is `feature_fd`, never "FID".

`evaluate_run` scores any run whose pipeline is an `ImagePipeline` (a GAN's, a text-to-image
model's: `generate(n, seed=, labels=)` plus its size, classes and data set), not one family;
`evaluate_pipeline` does the same for a pipeline object, `evaluate_samples` for images on disk.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..data import images as image_data
from ..data.images import ImageSet
from ..data.text import cache_dir
from . import feature_net, stats


def _subsample(data: ImageSet, n: int, seed: int) -> ImageSet:
    if len(data) <= n:
        return data
    idx = np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False))
    return data.subset(idx, data.source)


def _metrics(net: feature_net.FeatureNet, real_f: np.ndarray, fake: np.ndarray, fake_f: np.ndarray,
             fake_pred: np.ndarray, kid_subsets: int, k: int) -> dict[str, float]:
    out = {"feature_fd": stats.fd(fake_f, real_f),
           "kid": stats.kid(fake_f, real_f, subsets=kid_subsets, subset_size=min(1000, len(fake), len(real_f)))}
    out["precision"], out["recall"] = stats.precision_recall(real_f, fake_f, k=k)
    if net.num_classes:
        out["class_entropy"] = stats.class_entropy(fake_pred, net.num_classes)
    return out


def score(net: feature_net.FeatureNet, fake: np.ndarray, test: ImageSet, train: ImageSet | None = None,
          requested: np.ndarray | None = None, n: int = 10000, kid_subsets: int = 50, k: int = 3,
          seed: int = 0) -> dict:
    """Metrics of uint8 images `fake` (N, H, W, C) against `test`, with floors from `train`."""
    test = _subsample(test, n, seed)
    real_f, _ = net.embed(test.images)
    fake_f, fake_pred = net.embed(fake)
    report: dict = {"feature_net": net.id, "n_generated": len(fake), "n_reference": len(test)}
    report.update(_metrics(net, real_f, fake, fake_f, fake_pred, kid_subsets, k))
    if net.num_classes:
        hist = stats.class_histogram(fake_pred, net.num_classes)
        report["class_entropy_max"] = math.log(net.num_classes)
        report["classes_covered"] = int((hist >= 0.1 * len(fake) / net.num_classes).sum())
        report["class_histogram"] = hist.astype(int).tolist()
    if requested is not None and net.num_classes:
        report["label_accuracy"] = float((fake_pred == requested).mean())
        report["label_accuracy_floor"] = net.test_accuracy
    if train is not None:
        base = _subsample(train, min(n, len(fake)), seed + 1)
        base_f, base_pred = net.embed(base.images)
        for name, value in _metrics(net, real_f, base.images, base_f, base_pred, kid_subsets, k).items():
            report[f"{name}_floor"] = value
    return report


def resolve_dataset(ref: str, what: str = "--ref") -> str:
    """A data path, or a data-set name found in $GENFORGE_DATASETS or the genforge download cache;
    `what` (the flag or config field that gave it) heads the error when it is neither."""
    if ref in ("", "digits", "shapes") or Path(ref).exists():
        return ref
    for root in (os.environ.get("GENFORGE_DATASETS"), cache_dir() / "datasets"):
        if root and (Path(root) / ref).exists():
            return str(Path(root) / ref)
    raise FileNotFoundError(f"{what} {ref}: no such file or folder, and no data set of that name in "
                            "$GENFORGE_DATASETS or the genforge cache (try: genforge data get mnist)")


def reference(path: str, size: int, channels: int, test_fraction: float = 0.1, seed: int = 0,
              feature_steps: int = 0, fields: dict[str, str] | None = None
              ) -> tuple[ImageSet, ImageSet, feature_net.FeatureNet]:
    """(train, test, feature network) of a reference data set at the given size and channels.

    `fields`: a captions file's column names (image_field, caption_field, label_field), if not the defaults.
    """
    train = image_data.load(path, size, channels, "train", test_fraction, seed, **(fields or {}))
    test = image_data.load(path, size, channels, "test", test_fraction, seed, **(fields or {}))
    return train, test, feature_net.get(train, test, steps=feature_steps)


def check_inception(inception: bool) -> None:
    if inception:
        raise NotImplementedError("Inception FID is not available in this install: it needs Inception-v3 "
                                  "weights, which genforge cannot download; use the feature_fd it reports")


class ImagePipeline(Protocol):
    """What `evaluate_run` needs of a run's pipeline (GAN, text-to-image, ...): labelled images and its data.

    meta["config"]["data"] names the data set: "path" (unless `data=` is given) and optionally
    "test_fraction" (default 0.1) and a captions file's "image_field" / "caption_field" /
    "label_field"; meta["config"]["train"]["seed"] (default 0) seeds its split;
    "feature_steps" in the family's own section (e.g. gan.feature_steps) or in "data" picks the
    run's feature network (default 0 = automatic).
    """

    family: str
    image_size: int  # images are (image_size, image_size, channels)
    channels: int
    num_classes: int  # classes `generate` is conditioned on; 0 = unconditional
    meta: dict  # the checkpoint's metadata

    def generate(self, n: int, seed: int | None = None, labels: list[int] | None = None) -> np.ndarray:
        """n images as uint8 (n, image_size, image_size, channels); labels: one class per image."""
        ...


IMAGE_PIPELINE_FIELDS = ("generate", "image_size", "channels", "num_classes", "meta")
CAPTION_FIELDS = ("image_field", "caption_field", "label_field")  # data-config keys passed to image_data.load


@dataclass
class RunData:
    """Where a run's reference images come from, and the feature network it was monitored with."""
    path: str
    test_fraction: float
    seed: int
    feature_steps: int
    fields: dict[str, str]  # a captions file's column names, where the run's config sets them


def run_data(pipe: ImagePipeline, data: str | None = None, feature_steps: int = 0, where: str = "run",
             hint: str = "; pass the reference data set (--data PATH)") -> RunData:
    """The data set of an image run (or `data` instead), read from its saved config; errors name the
    run's data.path or --data, and end with `hint` (what the command can do about it)."""
    cfg = pipe.meta.get("config") or {}
    dcfg = cfg.get("data") or {}
    if data is None and not isinstance(dcfg.get("path"), str):
        raise ValueError(f"{where}: its config names no data.path{hint}")
    own = next((cfg[s]["feature_steps"] for s in (pipe.family, "data")
                if isinstance(cfg.get(s), dict) and "feature_steps" in cfg[s]), 0)
    fields = {k: dcfg[k] for k in CAPTION_FIELDS if isinstance(dcfg.get(k), str)}
    path = resolve_dataset(data, "--data") if data is not None else \
        resolve_dataset(dcfg["path"], f"{where}: its config's data.path")
    return RunData(path, float(dcfg.get("test_fraction", 0.1)),
                   int((cfg.get("train") or {}).get("seed", 0)), feature_steps or int(own), fields)


def check_image_pipeline(pipe, where: str = "run") -> None:
    """A clear error for a pipeline that does not generate labelled images (a GPT or a classifier)."""
    missing = [f for f in IMAGE_PIPELINE_FIELDS if not hasattr(pipe, f)]
    if missing:
        raise ValueError(f"{where}: a {getattr(pipe, 'family', '?')!r} run; image metrics need a run that "
                         f"generates images (its pipeline lacks {', '.join(missing)})")


def evaluate_pipeline(pipe: ImagePipeline, n: int = 10000, data: str | None = None, seed: int = 0,
                      kid_subsets: int = 50, feature_steps: int = 0, where: str = "run") -> dict:
    """Generate n images (every class in turn) from any image pipeline; score them against its data set."""
    check_image_pipeline(pipe, where)
    src = run_data(pipe, data, feature_steps, where)
    train, test, net = reference(src.path, pipe.image_size, pipe.channels, src.test_fraction, src.seed,
                                 src.feature_steps, src.fields)
    requested = np.arange(n) % pipe.num_classes if pipe.num_classes else None
    fake = pipe.generate(n, seed=seed, labels=None if requested is None else requested.tolist())
    want = (n, pipe.image_size, pipe.image_size, pipe.channels)
    if not isinstance(fake, np.ndarray) or fake.dtype != np.uint8 or fake.shape != want:
        got = f"{fake.dtype} {fake.shape}" if isinstance(fake, np.ndarray) else type(fake).__name__
        raise ValueError(f"{where}: generate() must return uint8 {want}, returned {got}")
    report = score(net, fake, test, train, requested, n=n, kid_subsets=kid_subsets, seed=seed)
    return {"data": src.path, **report}


def evaluate_run(run: str, n: int = 10000, data: str | None = None, seed: int = 0, kid_subsets: int = 50,
                 feature_steps: int = 0, device: str = "auto", inception: bool = False) -> dict:
    """Generate n images from an image run (any `ImagePipeline`) and score them against its data set's test split."""
    check_inception(inception)
    from .. import inference
    pipe = inference.load(run, device=device)
    return {"run": str(run), **evaluate_pipeline(pipe, n, data, seed, kid_subsets, feature_steps, where=str(run))}


def load_samples(path: str) -> ImageSet:
    """Images made by any tool: a folder of images (sub-folders = labels) or an .npz."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--samples {p}: no such file or folder")
    if p.suffix == ".npz":
        return image_data.load_npz(p)
    from PIL import Image
    first = next((f for f in sorted(p.rglob("*")) if f.suffix.lower() in image_data.IMAGE_SUFFIXES), None)
    if first is None:
        raise ValueError(f"--samples {p}: no images found")
    with Image.open(first) as img:
        size, channels = img.width, 1 if img.mode in ("L", "1", "I", "I;16") else 3
    return image_data.load_folder(p, size, channels)


def evaluate_samples(samples: str, ref: str, n: int = 10000, seed: int = 0, kid_subsets: int = 50,
                     feature_steps: int = 0, inception: bool = False, test_fraction: float = 0.1) -> dict:
    check_inception(inception)
    fake = load_samples(samples)
    size, channels = fake.images.shape[1], fake.images.shape[3]
    path = resolve_dataset(ref)
    train, test, net = reference(path, size, channels, test_fraction, 0, feature_steps)
    requested = None
    if fake.labels is not None and net.num_classes:
        names = fake.class_names
        lookup = {c: i for i, c in enumerate(net.class_names)}
        if all(c in lookup for c in names):  # folder labels map to the reference's classes by name
            requested = np.array([lookup[names[i]] for i in fake.labels])
        elif fake.labels.max() < net.num_classes:
            requested = fake.labels
    report = score(net, fake.images, test, train, requested, n=n, kid_subsets=kid_subsets, seed=seed)
    return {"samples": str(samples), "ref": path, **report}
