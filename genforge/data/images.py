"""Image data sets for the image families: IDX files, folders of images, .npz arrays, bundled digits.

    genforge train gan --data ../shared/datasets/mnist        # IDX (.gz or raw), MNIST layout
    genforge train gan --data photos/                          # folder; sub-folder names are labels
    genforge train gan --data faces.npz                        # 'images' (+ optional 'labels', 'class_names')
    genforge train gan --data captions.jsonl                   # (image path, caption) rows; or .csv,
    genforge train gan --data shapes/                          #   or a folder holding captions.jsonl
    genforge train gan --data mnist.npz                        # Keras layout: x_train, y_train, x_test, y_test
    genforge train gan                                         # scikit-learn's bundled 8x8 digits
    genforge train gan --data shapes                           # the drawn, captioned shapes set (data/shapes.py)

Every source becomes an `ImageSet`: uint8 images (N, H, W, C) at the configured size and channel
count, optional int64 labels and the class names, and for captioned sets one caption per image
(families that take no captions ignore them). Bad input is reported, never silently used:
corrupt images are counted and skipped (an error naming them past a threshold), mixed sizes and
modes are converted and said once, a label count that does not match the image count is an error
naming both files, and a captions file's bad row is an error naming the file, line and field.
"""
from __future__ import annotations

import csv
import gzip
import io
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .manifest import warn_if_synthetic
from .rows import json_lines

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
LABEL_KEYS = ("labels", "label", "target", "targets", "y")  # .npz keys accepted for labels
IMAGE_KEYS = ("images", "image", "x", "data")  # .npz keys accepted for images
CAPTIONS_FILE = "captions.jsonl"  # a folder holding this file is a captioned set
CAPTION_SUFFIXES = (".jsonl", ".csv")  # captions files: one (image path, caption) row each


@dataclass
class ImageSet:
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray | None  # int64 (N,) or None
    class_names: list[str] = field(default_factory=list)
    source: str = ""
    captions: list[str] | None = None  # one caption per image (captioned sets), or None

    def __post_init__(self):
        if self.captions is not None and len(self.captions) != len(self.images):
            raise ValueError(f"{self.source or 'ImageSet'}: {len(self.captions)} captions for {len(self.images)} "
                             "images; they must match one to one")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def subset(self, idx: np.ndarray, source: str) -> ImageSet:
        """The images at integer positions (or a boolean mask) `idx`, labels and captions kept aligned."""
        idx = np.flatnonzero(idx) if np.asarray(idx).dtype == bool else np.asarray(idx, np.int64).reshape(-1)
        labels = None if self.labels is None else self.labels[idx]
        captions = None if self.captions is None else [self.captions[i] for i in idx]
        return ImageSet(self.images[idx], labels, self.class_names, source, captions)


# ----------------------------------------------------------------------------- resizing


def convert(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 (N, h, w[, c]) -> uint8 (N, size, size, channels), resized with PIL where needed."""
    from PIL import Image
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    if c not in (1, 3, 4):
        raise ValueError(f"images have {c} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)")
    if (h, w, c) == (size, size, channels):
        return np.ascontiguousarray(images)
    if n:
        _note(f"{n} images of {h}x{w}x{c} converted to {size}x{size}x{channels} (the model's size and channels)")
    out = np.empty((n, size, size, channels), np.uint8)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
    for i in range(n):
        img = Image.fromarray(images[i, ..., 0] if c == 1 else images[i], mode)
        out[i] = _to_array(img, size, channels)
    return out


def _to_array(img, size: int, channels: int) -> np.ndarray:
    from PIL import Image
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC if img.width < size else Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if channels == 1 else arr


MAX_PIXELS = 4096 * 4096  # larger images are refused before they are decoded (a small PNG can expand to gigabytes)


def decode(blob: bytes, size: int, channels: int, where: str) -> np.ndarray:
    """One encoded image (PNG, JPEG, ...) -> uint8 (size, size, channels), resized and converted like
    the training images; anything that is not a readable image is a ValueError naming `where`."""
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(io.BytesIO(blob))
        if img.width * img.height > MAX_PIXELS:
            raise ValueError(f"{where}: {img.width}x{img.height} pixels, more than the {MAX_PIXELS:,} accepted")
        img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"{where}: not a readable image ({type(e).__name__})") from None
    return _to_array(img, size, channels)


# ----------------------------------------------------------------------------- IDX


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format; gzip'd or raw) as a uint8 array; errors name the file."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: cannot read IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    need = int(np.prod(dims)) if dims else 0
    if len(raw) - start != need:
        raise ValueError(f"{path}: truncated or padded IDX file (header says {dims} = {need} bytes "
                         f"of data, file has {len(raw) - start})")
    return np.frombuffer(raw, np.uint8, offset=start).reshape(dims).copy()  # writable, owns its memory


def _idx_pair(path: Path, split: str) -> tuple[Path, Path | None]:
    """The images file (and its labels file, if present) of a split in an IDX folder or file."""
    if path.is_file():
        images = path
    else:
        prefix = "train" if split == "train" else "t10k"
        found = sorted(p for p in path.iterdir() if p.name.startswith(prefix) and "idx3" in p.name)
        if not found:
            raise FileNotFoundError(f"{path}: no {prefix}-images-idx3-ubyte[.gz] file")
        images = found[0]
    labels = images.with_name(images.name.replace("images", "labels").replace("idx3", "idx1"))
    if labels == images or not labels.exists():
        alt = labels.with_name(labels.name.removesuffix(".gz")) if labels.suffix == ".gz" else labels.with_name(labels.name + ".gz")
        labels = alt if alt.exists() and alt != images else None
    return images, labels


def load_idx(path: Path, split: str) -> ImageSet:
    images_file, labels_file = _idx_pair(path, split)
    images = read_idx(images_file)
    if images.ndim != 3:
        raise ValueError(f"{images_file}: expected a 3-d IDX array (N, H, W), got shape {images.shape}")
    labels = None
    if labels_file is not None:
        labels = read_idx(labels_file).astype(np.int64)
        _check_count(len(images), len(labels), images_file, labels_file)
    names = [str(i) for i in range(int(labels.max()) + 1)] if labels is not None else []
    return ImageSet(images[..., None], labels, names, str(images_file))


def _check_count(n_images: int, n_labels: int, images_from, labels_from) -> None:
    if n_images != n_labels:
        raise ValueError(f"{labels_from} has {n_labels} labels but {images_from} has {n_images} images; "
                         "they must match one to one")


def is_idx(path: Path) -> bool:
    if path.is_file():
        return "idx" in path.name and "ubyte" in path.name
    return path.is_dir() and any("idx3-ubyte" in p.name for p in path.iterdir())


# ----------------------------------------------------------------------------- npz


_told: set[str] = set()


def _note(message: str) -> None:
    """Say once (per process) what was converted."""
    if message not in _told:
        _told.add(message)
        print(f"genforge: {message}", file=sys.stderr)


def npz_has_split(path: Path) -> bool:
    """The Keras layout (x_train, y_train, x_test, y_test, as in Keras's mnist.npz) carries its own split."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {"x_train", "x_test"} <= set(arrays.files)
    except (OSError, ValueError):
        return False


def load_npz(path: Path, split: str | None = None) -> ImageSet:
    """'images' (+ 'labels'), or with `split` ('train'/'test') the Keras layout's x_<split> and y_<split>."""
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read .npz ({e})") from None
    with arrays:
        keras = split is not None and f"x_{split}" in arrays.files
        key = f"x_{split}" if keras else next((k for k in IMAGE_KEYS if k in arrays.files), None)
        if key is None:
            raise ValueError(f"{path}: no images array (looked for {', '.join(IMAGE_KEYS)}, or x_train/x_test; "
                             f"found {', '.join(arrays.files) or 'nothing'})")
        images = arrays[key]
        lkey = (f"y_{split}" if f"y_{split}" in arrays.files else None) if keras else \
            next((k for k in LABEL_KEYS if k in arrays.files), None)
        labels = arrays[lkey].astype(np.int64).reshape(-1) if lkey else None
        names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays.files and lkey else []
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3, 4):
        images = images.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"{path}: '{key}' must be a non-empty (N, H, W[, C]) array, got shape {images.shape}")
    if images.dtype != np.uint8:
        images = _float_to_uint8(images, f"{path}:{key}")
    if images.ndim == 3:
        images = images[..., None]  # (N, H, W) -> (N, H, W, 1)
    if labels is not None:
        _check_count(len(images), len(labels), f"{path}:{key}", f"{path}:{lkey}")
        if labels.min() < 0:
            raise ValueError(f"{path}:{lkey}: labels must be >= 0, found {labels.min()}")
        if names and labels.max() >= len(names):
            raise ValueError(f"{path}:class_names: {len(names)} names, but labels go up to {labels.max()}")
    if labels is not None and not names:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    return ImageSet(images, labels, names, f"{path} ({split} split)" if keras else str(path))


def _float_to_uint8(images: np.ndarray, where: str) -> np.ndarray:
    """Floats in [0, 1] or [-1, 1] (or ints in [0, 255]) -> uint8."""
    x = images.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{where}: images contain NaN or inf")
    lo, hi = x.min(), x.max()
    if lo >= 0 and hi <= 1:
        x = x * 255
        _note(f"{where}: {images.dtype} pixels in [0, 1] scaled to uint8 [0, 255]")
    elif lo >= -1 and hi <= 1:
        x = (x + 1) * 127.5
        _note(f"{where}: {images.dtype} pixels in [-1, 1] scaled to uint8 [0, 255]")
    elif lo < 0 or hi > 255:
        raise ValueError(f"{where}: pixel values span [{lo}, {hi}]; expected [0, 1], [-1, 1] or [0, 255]")
    else:
        _note(f"{where}: {images.dtype} pixels in [0, 255] rounded to uint8")
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- folders


def load_folder(path: Path, size: int, channels: int, max_bad: float = 0.01) -> ImageSet:
    """Every image under `path`; with sub-folders, each sub-folder name is a class."""
    from PIL import Image, UnidentifiedImageError
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    classes = sorted({f.parent.relative_to(path).parts[0] for f in files if f.parent != path})
    if classes and any(f.parent == path for f in files):
        raise ValueError(f"{path}: images both at the top level and in sub-folders; put every image in a "
                         "class sub-folder (labelled) or all at the top level (unlabelled)")
    index = {c: i for i, c in enumerate(classes)}
    images, labels, bad, seen = [], [], [], set()
    for f in files:
        try:
            with Image.open(f) as img:
                img.load()
                seen.add((img.size, img.mode))
                arr = _to_array(img, size, channels)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            bad.append(f)
            continue
        images.append(arr)
        if classes:
            labels.append(index[f.relative_to(path).parts[0]])
    if bad and (len(bad) > max_bad * len(files) or not images):
        shown = ", ".join(str(b) for b in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise ValueError(f"{path}: {len(bad)} of {len(files)} images are corrupt or unreadable, more than "
                         f"data.max_bad={max_bad:.0%}: {shown}")
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} corrupt or unreadable image(s) of {len(files)}, "
                      f"e.g. {bad[0]}", stacklevel=2)
    if len(seen) > 1:
        sizes = sorted({s for s, _ in seen})
        modes = sorted({m for _, m in seen})
        warnings.warn(f"{path}: images have mixed sizes {sizes[:4]} / modes {modes}; all converted to "
                      f"{size}x{size}x{channels}", stacklevel=2)
    return ImageSet(np.stack(images), np.array(labels, np.int64) if classes else None, classes, str(path))


# ----------------------------------------------------------------------------- captioned sets


@dataclass
class CaptionRow:
    """One (image, caption) row of a captions file, with where it came from for error messages."""
    image: Path  # resolved: relative paths are relative to the captions file's folder
    caption: str
    label: str | int | None
    where: str  # 'FILE:LINE'


def is_captioned(path: Path) -> bool:
    """A captions file (.jsonl / .csv), or a folder holding captions.jsonl."""
    if path.is_dir():
        return (path / CAPTIONS_FILE).is_file()
    return path.suffix.lower() in CAPTION_SUFFIXES


def _caption_row(values: dict, file: Path, where: str, image_field: str, caption_field: str,
                 label_field: str) -> CaptionRow:
    """One row of `file`, checked; `where` ('FILE:LINE') starts every error."""
    for name in (image_field, caption_field):
        if values.get(name) is None:
            raise ValueError(f"{where}: no '{name}' field (fields: {', '.join(map(str, values)) or 'none'})")
        if not isinstance(values[name], str):
            raise ValueError(f"{where}: '{name}' must be a string, got {type(values[name]).__name__}")
    caption = values[caption_field].strip()
    if not caption:
        raise ValueError(f"{where}: empty '{caption_field}'")
    if not values[image_field].strip():
        raise ValueError(f"{where}: empty '{image_field}'")
    image = file.parent / values[image_field].strip()
    if not image.is_file():
        raise ValueError(f"{where}: '{image_field}' {values[image_field]!r} not found ({image})")
    label = values.get(label_field)
    label = None if label == "" else label  # an empty CSV cell: no label
    if label is not None and (isinstance(label, bool) or not isinstance(label, (int, str))):
        raise ValueError(f"{where}: '{label_field}' must be a class name or a non-negative integer, got {label!r}")
    if isinstance(label, int) and label < 0:
        raise ValueError(f"{where}: '{label_field}' must be >= 0, got {label}")
    return CaptionRow(image, caption, label, where)


def read_captions(path: Path, image_field: str = "image", caption_field: str = "caption",
                  label_field: str = "label") -> list[CaptionRow]:
    """The rows of a captions .jsonl (one JSON object a line; blank lines skipped) or .csv (a header row).

    Each row names an image (a path, relative to the file's folder) and a non-empty caption; an
    optional `label_field` gives its class. Every bad row is an error naming the file, line and field.
    """
    fields = (image_field, caption_field, label_field)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read captions file ({e})") from None
    rows = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        for name in fields[:2]:
            if name not in header:
                raise ValueError(f"{path}:1: no '{name}' column (columns: {', '.join(header) or 'none'})")
        try:
            for values in reader:
                rows.append(_caption_row({k: v for k, v in values.items() if k is not None}, path,
                                         f"{path}:{reader.line_num}", *fields))
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: bad CSV ({e})") from None
    else:
        for where, values in json_lines(text.split("\n"), path):  # JSON strings may hold other line breaks
            if not isinstance(values, dict):
                raise ValueError(f"{where}: expected a JSON object with '{image_field}' and "
                                 f"'{caption_field}', got {type(values).__name__}")
            rows.append(_caption_row(values, path, where, *fields))
    if not rows:
        raise ValueError(f"{path}: no captioned images")
    labelled = [r.label is not None for r in rows]
    if any(labelled) and not all(labelled):
        first = rows[labelled.index(False)]
        raise ValueError(f"{first.where}: no '{label_field}', but other rows have one; label every row or none")
    return rows


def _class_index(labels: list[str | int], where: str) -> tuple[np.ndarray, list[str]]:
    """Integer labels (or all-digit strings, as CSV gives them) are class indices, named '0'..'max', as
    in the other loaders; other strings are class names, in sorted order."""
    if all(isinstance(v, str) and v.isdecimal() for v in labels):
        labels = [int(v) for v in labels]
    if all(isinstance(v, int) for v in labels):
        return np.array(labels, np.int64), [str(i) for i in range(max(labels) + 1)]
    if any(isinstance(v, int) for v in labels):
        raise ValueError(f"{where}: labels mix integers and names; use one kind")
    names = sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[v] for v in labels], np.int64), names


def load_captioned(path: Path, size: int, channels: int, image_field: str = "image", caption_field: str = "caption",
                   label_field: str = "label") -> ImageSet:
    """A captioned set: a captions .jsonl / .csv, or a folder holding captions.jsonl.

    Rows may repeat an image with other captions (it is decoded once). An unreadable image is
    an error naming its row: a captions file lists its images on purpose.
    """
    from PIL import Image, UnidentifiedImageError
    file = path / CAPTIONS_FILE if path.is_dir() else path
    rows = read_captions(file, image_field, caption_field, label_field)
    decoded: dict[Path, np.ndarray] = {}
    for row in rows:
        if row.image not in decoded:
            try:
                with Image.open(row.image) as img:
                    img.load()
                    decoded[row.image] = _to_array(img, size, channels)
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
                raise ValueError(f"{row.where}: '{image_field}' {row.image} is not a readable image ({e})") from None
    images = np.stack([decoded[r.image] for r in rows])  # (N, size, size, channels)
    labels, names = None, []
    if rows[0].label is not None:
        labels, names = _class_index([r.label for r in rows], str(file))
    return ImageSet(images, labels, names, str(file), [r.caption for r in rows])


# ----------------------------------------------------------------------------- digits


def load_digits() -> ImageSet:
    """scikit-learn's bundled 8x8 digits (1,797 images, values 0..16): the no-download default."""
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    images = np.clip(np.rint(d.images * (255 / 16)), 0, 255).astype(np.uint8)
    return ImageSet(images[..., None], d.target.astype(np.int64), [str(i) for i in range(10)], "sklearn:digits")


# ----------------------------------------------------------------------------- entry point


def load(path: str, size: int, channels: int, split: str = "train", test_fraction: float = 0.1,
         seed: int = 0, max_bad: float = 0.01, image_field: str = "image", caption_field: str = "caption",
         label_field: str = "label") -> ImageSet:
    """The `split` ('train' or 'test') of the data set at `path` ('' or 'digits' = bundled digits).

    IDX folders and "shapes" carry their own test split (t10k-*; shapes also "held_out_combos"); every
    other source holds out a seeded `test_fraction` of its images. The *_field names are the columns
    of a captions file.
    """
    if path == "shapes":
        from . import shapes
        data = shapes.load(split)
        data.images = convert(data.images, size, channels)
        return data
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if path in ("", "digits"):
        data = load_digits()
    else:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"data file or folder not found: {p}")
        warn_if_synthetic(p)
        if p.is_dir() and (p / "data.npz").is_file() and not any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.rglob("*")):
            p = p / "data.npz"  # a `genforge synth --format npz` folder: its data.npz beside manifest.json
        if is_idx(p):
            if p.is_dir():
                data = load_idx(p, split)
                data.images = convert(data.images, size, channels)
                return data
            data = load_idx(p, "train")
        elif is_captioned(p):
            data = load_captioned(p, size, channels, image_field, caption_field, label_field)
        elif p.suffix == ".npz" and npz_has_split(p):  # Keras layout: its own test split
            data = load_npz(p, split)
            data.images = convert(data.images, size, channels)
            return data
        elif p.suffix == ".npz":
            data = load_npz(p)
        elif p.is_dir():
            data = load_folder(p, size, channels, max_bad)
        else:
            raise ValueError(f"{p}: unsupported image data (expected an IDX file or folder, a folder of "
                             "images, an .npz, or a captions .jsonl/.csv)")
    data.images = convert(data.images, size, channels)
    return held_out(data, split, test_fraction, seed)


def held_out(data: ImageSet, split: str, test_fraction: float, seed: int) -> ImageSet:
    """A seeded train/test split of a source without its own test set."""
    if test_fraction <= 0:
        return data
    perm = np.random.default_rng(seed).permutation(len(data))
    n_test = max(1, int(round(len(data) * test_fraction)))
    if n_test >= len(data):
        raise ValueError(f"{data.source}: {len(data)} images are too few to hold out {test_fraction:.0%} for testing")
    idx = np.sort(perm[:n_test] if split == "test" else perm[n_test:])
    return data.subset(idx, f"{data.source} ({split} split)")


@dataclass
class ImageDataConfig:
    """The `data` section of the image families (gan, captiongan, vqvae, text2image)."""
    path: str = ""  # IDX file or folder, image folder, .npz, captions file, a name; '' = scikit-learn's 8x8 digits
    test_fraction: float = 0.1  # held out for evaluation when the source has no test split
    max_bad: float = 0.01  # share of corrupt images skipped (with a warning) before it is an error

    def validate(self):
        if not 0.0 <= self.test_fraction < 1.0 or not 0.0 <= self.max_bad <= 1.0:
            raise ValueError("data.test_fraction must be in [0, 1) and data.max_bad in [0, 1]")

    def read(self, split: str, size: int, channels: int, seed: int, path: str | None = None) -> ImageSet:
        """One split of this section's images (or of `path`) at a size and channel count."""
        return load(self.path if path is None else path, size, channels, split, self.test_fraction, seed, self.max_bad)
