"""Labelled text: read (text, label) pairs, build a label vocabulary, split them stratified.

    genforge train classifier --data aclImdb/train          # folders: one sub-folder per class
    genforge train classifier --data reviews.csv --data.text_field=review --data.label_field=sentiment
    genforge train classifier --data imdb/train.jsonl.gz    # JSONL (.gz too): {"text": ..., "label": 1}

Formats, by path:
- a folder whose sub-folders are the classes, each holding one `.txt` file per example (the
  aclImdb layout `train|test/pos|neg/*.txt`; aclImdb's unlabelled `unsup/` folder is skipped);
- `.csv` (header row names the fields), `.jsonl` / `.json` (one object a line); `.gz` for either.
Labels may be strings or integers; they become strings (`1` -> "1"). Every problem names the file
and the line (or file) and the field.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .manifest import warn_if_synthetic

UNLABELLED_DIRS = ("unsup",)  # aclImdb keeps 50k unlabelled reviews here


@dataclass
class Labelled:
    texts: list[str]
    labels: list[str]  # raw labels as strings; '' for unlabelled inputs
    where: list[str]  # 'file:line' (or the file) of each example, for error messages
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx) -> Labelled:
        idx = [int(i) for i in idx]
        return Labelled([self.texts[i] for i in idx], [self.labels[i] for i in idx],
                        [self.where[i] for i in idx], self.source)


def _lines(path: Path, errors: str):
    """Decoded lines (newlines kept); invalid UTF-8 is an error naming the line."""
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    with raw:
        for line, data in enumerate(raw, start=1):
            try:
                yield data.decode("utf-8", errors=errors)
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{line}: invalid UTF-8 (byte 0x{data[e.start]:02x}); fix the file "
                                 "or pass --data.errors=replace") from None


def _label(value, where: str, field: str) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError(f"{where}: field '{field}' holds {value!r}, not a class label (a string or an integer)")


def _text(value, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: field '{field}' holds {type(value).__name__} {value!r}, not text")
    if not value.strip():
        raise ValueError(f"{where}: empty text in field '{field}'")
    return value


def _read_rows(path: Path, text_field: str, label_field: str | None, errors: str, kind: str):
    """Yield (text, label, where) from a CSV or JSONL file."""
    if kind == "csv":
        reader = csv.DictReader(_lines(path, errors))
        if reader.fieldnames is None:
            raise ValueError(f"{path}: empty CSV file (no header row)")
        for name in (text_field, label_field):
            if name is not None and name not in reader.fieldnames:
                raise ValueError(f"{path}:1: the header has no field '{name}' (fields: "
                                 f"{', '.join(reader.fieldnames)}); set --data.text_field / --data.label_field")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            label = _label(row.get(label_field), where, label_field) if label_field else ""
            yield _text(row.get(text_field), where, text_field), label, where
        return
    for line, raw in enumerate(_lines(path, errors), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{line}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not a JSON object ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        for name in (text_field, label_field):
            if name is not None and name not in obj:
                raise ValueError(f"{where}: missing field '{name}' (fields: {', '.join(obj)}); "
                                 "set --data.text_field / --data.label_field")
        label = _label(obj[label_field], where, label_field) if label_field else ""
        yield _text(obj[text_field], where, text_field), label, where


def _read_folder(path: Path, errors: str):
    classes = sorted(d for d in path.iterdir() if d.is_dir() and d.name not in UNLABELLED_DIRS)
    classes = [d for d in classes if any(d.glob("*.txt"))]
    if not classes:
        hint = ""
        if (path / "train").is_dir() and (path / "test").is_dir():
            hint = f"; this looks like an aclImdb root: pass {path / 'train'} or {path / 'test'}"
        raise ValueError(f"{path}: no class sub-folders holding .txt files{hint}")
    for d in classes:
        for file in sorted(d.glob("*.txt"), key=lambda p: (len(p.name), p.name)):
            raw = file.read_bytes()
            try:
                text = raw.decode("utf-8", errors=errors)
            except UnicodeDecodeError as e:
                raise ValueError(f"{file}: invalid UTF-8 at byte offset {e.start} (byte 0x{raw[e.start]:02x}); "
                                 "fix the file or pass --data.errors=replace") from None
            yield _text(text, str(file), "text"), d.name, str(file)


def read_labelled(path: str | os.PathLike, text_field: str = "text", label_field: str | None = "label",
                  errors: str = "strict") -> Labelled:
    """Every example of a folder / CSV / JSONL file. label_field=None reads texts only."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file or folder not found: {path}")
    warn_if_synthetic(path)
    name = path.name.lower().removesuffix(".gz")
    if path.is_dir():
        rows = _read_folder(path, errors)
    elif name.endswith(".csv"):
        rows = _read_rows(path, text_field, label_field, errors, "csv")
    elif name.endswith((".jsonl", ".json")):
        rows = _read_rows(path, text_field, label_field, errors, "jsonl")
    else:
        raise ValueError(f"{path}: unknown format; expected a folder of class sub-folders, .csv, .jsonl "
                         "(optionally .gz)")
    out = Labelled([], [], [], str(path))
    for text, label, where in rows:
        out.texts.append(text)
        out.labels.append(label)
        out.where.append(where)
    if not out.texts:
        raise ValueError(f"{path}: no examples")
    return out


def read_texts(path: str | os.PathLike, text_field: str = "text", errors: str = "strict") -> Labelled:
    """Texts to classify, from a .jsonl/.csv file (labels, when present, are ignored) or a .txt (one a line)."""
    path = Path(path)
    if path.name.lower().removesuffix(".gz").endswith(".txt"):
        out = Labelled([], [], [], str(path))
        for line, raw in enumerate(_lines(path, errors), start=1):
            if raw.strip():
                out.texts.append(raw.rstrip("\r\n"))
                out.labels.append("")
                out.where.append(f"{path}:{line}")
        return out
    return read_labelled(path, text_field, None, errors)


# ----------------------------------------------------------------------------- labels


def label_vocabulary(labels: list[str], where: str) -> list[str]:
    """Sorted class names (numerically when every label is an integer); at least two classes."""
    names = set(labels)
    if len(names) < 2:
        raise ValueError(f"{where}: only one class ({sorted(names)[0]!r}) is present; a classifier needs "
                         "examples of at least two classes")
    if all(n.lstrip("-").isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def encode_labels(data: Labelled, classes: list[str]) -> np.ndarray:
    """Class indices (N,); a label the model never saw is an error naming where it is."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({lab for lab in data.labels if lab not in index})
    if unknown:
        first = next(w for w, lab in zip(data.where, data.labels) if lab not in index)
        raise ValueError(f"{data.source}: label(s) {', '.join(map(repr, unknown[:5]))} never seen in training "
                         f"(first at {first}); this model knows {', '.join(map(repr, classes))}")
    return np.array([index[lab] for lab in data.labels], dtype=np.int64)


# ----------------------------------------------------------------------------- splits


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): `fraction` of every class (at least one) is held out."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_val = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """k disjoint folds covering every index, each with (nearly) the same class proportions."""
    if k < 2:
        raise ValueError(f"--folds must be at least 2, got {k}")
    counts = np.bincount(y)
    if counts[counts > 0].min() < k:
        raise ValueError(f"--folds {k}: the smallest class has only {counts[counts > 0].min()} examples")
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    start = 0  # deal each class round-robin, continuing where the previous class stopped
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        for j, i in enumerate(idx):
            folds[(start + j) % k].append(int(i))
        start = (start + len(idx)) % k
    return [np.sort(np.array(f, dtype=np.int64)) for f in folds]
