"""Synthetic labelled data sets from trained generators: `genforge synth`.

    genforge synth runs/cdcgan --n 1000 --out synth/mnist [--format folder|npz] [--seed 0]
    genforge synth runs/cdcgan --n 1000 --out synth/mnist --judge runs/imageclf --min-confidence 0.9 --dedup 0.05
    genforge synth runs/t2i --per-class '3=100,7=50' --guidance 3 --out synth/t2i
    genforge synth runs/labelgpt --n 500 --out synth/reviews --temperature 0.9 --judge runs/nbbag --dedup 0.5

    from genforge import synth
    report = synth.make("runs/cdcgan", n=1000, out="synth/mnist")   # the manifest, as a dict

Three kinds of generator make labelled data: a class-conditional GAN (`generate(n, seed, labels)`),
a text-to-image run (`generate(prompts)`, one caption template filled in per image) and a
label-conditioned GPT (`generate_labelled(label, n)`). Images are written as class folders of
PNGs or one .npz (images, labels, class_names); texts as JSONL {text, label}; genforge's loaders
(data/images.load, data/labelled.read_labelled) read them back. Two filters run in order, each
drop counted per reason and per class (empty texts too): a judge classifier (an image or a text classifier run)
keeps samples it assigns to their intended label with probability >= min_confidence; `dedup`
drops near-copies of the generator's training items (images: RMS pixel distance in [0, 1] units
below the threshold; texts: share of the sample's word 4-grams found in one training text above
it). manifest.json beside the data records the generator and its checkpoint's sha256, the
command, seed, options, filters and counts, and "synthetic": true (data/manifest.py warns when a
loader reads such a set).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .data import manifest as manifest_file
from .data.download import sha256_of

NGRAM = 4  # word n-grams of the text near-duplicate filter


# ----------------------------------------------------------------------------- generators


def _kind(pipe, where: str) -> str:
    """'gan', 't2i' or 'text': what the run generates; a clear error for anything else."""
    from .families.base import ImageGenerationPipeline, TextToImagePipeline
    if isinstance(pipe, TextToImagePipeline):
        return "t2i"
    if isinstance(pipe, ImageGenerationPipeline):
        return "gan"
    if hasattr(pipe, "generate_labelled"):
        return "text"
    if hasattr(pipe, "predict_proba"):
        raise ValueError(f"{where}: a {pipe.family!r} classifier run; synth needs a generator run "
                         "(a conditional GAN, a text-to-image run or a label-conditioned GPT)")
    raise ValueError(f"{where}: a {pipe.family!r} run that cannot make labelled data")


def class_names(pipe, kind: str, where: str) -> list[str]:
    """The classes a generator can be asked for; [] when it is not conditional."""
    if kind == "gan":
        return list(pipe.class_names) if pipe.num_classes else []
    if kind == "t2i":  # the run's own, else those of the labelled set it was trained on
        return list(pipe.meta.get("class_names") or _train_images(pipe, where).class_names)
    return list(getattr(pipe, "labels", []))


def class_counts(names: list[str], n: int | None, per_class: dict[str, int] | None) -> dict[str, int]:
    """{class: count}: n for every class, or the --per-class counts (classes the generator knows)."""
    counts = dict(per_class) if per_class else {c: n for c in names}
    unknown = [c for c in counts if c not in names]
    if unknown:
        raise ValueError(f"--per-class: unknown class(es) {', '.join(map(repr, unknown))}; the generator knows "
                         f"{', '.join(map(repr, names))}")
    bad = {c: k for c, k in counts.items() if k is None or k <= 0}
    if bad:
        raise ValueError(f"--n / --per-class: counts must be positive, got {bad}")
    return counts


def parse_per_class(text: str) -> dict[str, int]:
    """'a=100,b=50' -> {'a': 100, 'b': 50}."""
    out = {}
    for part in text.split(","):
        name, eq, value = part.strip().rpartition("=")
        if not eq or not name or not value.strip().lstrip("-").isdigit():
            raise ValueError(f"--per-class {text!r}: expected CLASS=COUNT pairs separated by commas, e.g. 'a=100,b=50'")
        out[name.strip()] = int(value)
    return out


def _t2i_prompts(names: list[str]) -> list[list[str]]:
    from .data import templates
    return templates.prompts(names, "train")


def generate(pipe, kind: str, counts: dict[str, int], names: list[str], seed: int, temperature: float | None,
             guidance: float | None, max_new_tokens: int, prompts: list[list[str]] | None = None,
             progress: bool = True):
    """(samples, labels): uint8 (N, H, W, C) images or N texts, and int64 (N,) indices into `names`.
    Class k is drawn with seed + k, so a class's samples do not depend on the other classes' counts.
    progress=False hides the bar (logs of long runs)."""
    from tqdm import tqdm
    samples, labels = [], []
    if kind == "t2i" and prompts is None:
        prompts = _t2i_prompts(names)
    bar = tqdm(total=sum(counts.values()), desc="synth", unit="sample", dynamic_ncols=True, mininterval=1.0,
               disable=not progress)
    for name, count in counts.items():
        bar.set_postfix_str(f"class {name}")
        k = names.index(name)
        if kind == "gan":
            samples.append(pipe.generate(count, seed=seed + k, labels=[k] * count))
        elif kind == "t2i":
            captions = [prompts[k][i % len(prompts[k])] for i in range(count)]
            samples.append(pipe.generate(captions, n=count, seed=seed + k, guidance=guidance, temperature=temperature))
        else:
            samples.append(pipe.generate_labelled(name, count, max_new_tokens, temperature=temperature or 0.8,
                                                  seed=seed + k))
        labels.append(np.full(count, k, np.int64))
        bar.update(count)
    bar.close()
    merged = [t for part in samples for t in part] if kind == "text" else np.concatenate(samples)
    return merged, np.concatenate(labels)


def _unconditional(pipe, kind: str, total: int, seed: int, max_new_tokens: int, temperature: float | None):
    if kind == "gan":
        return pipe.generate(total, seed=seed)
    if kind == "text":
        texts = pipe.generate("", max_new_tokens=max_new_tokens, num_samples=total, seed=seed,
                              temperature=temperature or 0.8)
        return [texts] if isinstance(texts, str) else list(texts)
    raise ValueError("--label-from works with unconditional GANs and GPTs only")


# ----------------------------------------------------------------------------- filters


def judge_keep(probs: np.ndarray, labels: np.ndarray, columns: np.ndarray, min_confidence: float) -> np.ndarray:
    """Boolean (N,): the judge's probability of each sample's intended class is >= min_confidence.
    probs (N, K_judge); columns maps the generator's class index to the judge's column."""
    return probs[np.arange(len(labels)), columns[labels]] >= min_confidence


def judge_columns(judge_labels: list[str], names: list[str], where: str) -> np.ndarray:
    missing = [c for c in names if c not in judge_labels]
    if missing:
        raise ValueError(f"--judge {where}: the judge does not know class(es) {', '.join(map(repr, missing))} "
                         f"(it knows {', '.join(map(repr, judge_labels))})")
    return np.array([judge_labels.index(c) for c in names])


def nearest_distance(images: np.ndarray, train: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(N,) RMS pixel distance (pixels in [0, 1]) from each image to its nearest training image."""
    import torch
    a = torch.as_tensor(images.reshape(len(images), -1), dtype=torch.float32) / 255  # (N, D)
    b = torch.as_tensor(train.reshape(len(train), -1), dtype=torch.float32) / 255  # (M, D)
    best = torch.full((len(a),), float("inf"))
    for s in range(0, len(b), chunk):
        best = torch.minimum(best, torch.cdist(a, b[s:s + chunk]).min(dim=1).values)
    return (best / a.shape[1] ** 0.5).numpy()


def _ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def ngram_overlap(texts: list[str], train: list[str], n: int = NGRAM) -> np.ndarray:
    """(N,) for each text, the largest share of its word n-grams that one training text also holds
    (0 for a text shorter than n words)."""
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, t in enumerate(train):
        for g in _ngrams(t, n):
            index[g].append(i)
    out = np.zeros(len(texts))
    for j, t in enumerate(texts):
        grams = _ngrams(t, n)
        hits = Counter(i for g in grams for i in index.get(g, ()))
        if grams and hits:
            out[j] = max(hits.values()) / len(grams)
    return out


def _training_items(pipe, kind: str, where: str):
    """The generator's training images (its run's data set, train split) or texts."""
    dcfg = (pipe.meta.get("config") or {}).get("data") or {}
    if kind == "text":
        from .data.labelled import read_labelled
        if not dcfg.get("path"):
            raise ValueError(f"--dedup: {where}'s config names no data.path to compare against")
        return read_labelled(dcfg["path"], dcfg.get("text_field", "text"), None).texts
    return _train_images(pipe, f"--dedup: {where}").images


def _train_images(pipe, where: str):
    """The train split of an image run's data set (its config's data.path), as an ImageSet."""
    from .data import images as image_data
    from .metrics.protocol import run_data
    src = run_data(pipe, where=where, hint=" (synth reads the generator's training images from it)")
    return image_data.load(src.path, pipe.image_size, pipe.channels, "train", src.test_fraction, src.seed, **src.fields)


def apply_filters(pipe, kind: str, run: str, samples, labels: np.ndarray, names: list[str], judge_pipe, judge: str | None,
                  min_confidence: float, dedup: float | None) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """(boolean keep mask (N,), {reason: {class: dropped}}): empty texts, then the judge, then near-copies;
    each filter sees only the samples the ones before it kept."""
    keep = np.ones(len(labels), bool)
    dropped: dict[str, dict[str, int]] = {}

    def drop(reason: str, bad_among_kept: np.ndarray) -> None:
        mask = np.zeros(len(labels), bool)
        mask[np.flatnonzero(keep)[bad_among_kept]] = True
        dropped[reason] = _tally(mask, labels, names)
        keep[mask] = False

    if kind == "text":  # a text that ended at once (or is only white space) is no example
        drop("empty", np.array([not t.strip() for t in samples], bool))
    if judge_pipe is not None:
        sel = np.flatnonzero(keep)
        probs = judge_pipe.predict_proba(_pick(samples, sel, kind))
        drop("judge", ~judge_keep(probs, labels[sel], judge_columns(list(judge_pipe.labels), names, judge),
                                  min_confidence))
    if dedup is not None:
        train, kept = _training_items(pipe, kind, run), _pick(samples, np.flatnonzero(keep), kind)
        drop("dedup", ngram_overlap(kept, train) > dedup if kind == "text" else nearest_distance(kept, train) < dedup)
    return keep, dropped


def _pick(samples, idx: np.ndarray, kind: str):
    return [samples[i] for i in idx] if kind == "text" else samples[idx]


# ----------------------------------------------------------------------------- writing


def check_out(out: Path, overwrite: bool) -> None:
    """A new or empty folder; with overwrite, an earlier synthetic set (a folder holding manifest.json) is replaced."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise ValueError(f"--out {out}: exists and is not empty; choose another folder or pass --overwrite")
    if not (out / manifest_file.MANIFEST).is_file():
        raise ValueError(f"--out {out}: --overwrite replaces only a synthetic set (a folder holding "
                         f"{manifest_file.MANIFEST}); this folder holds other files")
    shutil.rmtree(out)


def write(out: Path, fmt: str, samples, labels: np.ndarray, names: list[str]) -> list[str]:
    """Write the set; returns the data files' names relative to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with open(out / "data.jsonl", "w", encoding="utf-8") as f:
            for text, k in zip(samples, labels):
                f.write(json.dumps({"text": text, "label": names[k]}, ensure_ascii=False) + "\n")
        return ["data.jsonl"]
    if fmt == "npz":
        np.savez_compressed(out / "data.npz", images=samples, labels=labels, class_names=np.array(names))
        return ["data.npz"]
    from .images import to_pil
    bad = [c for c in names if not c or c in (".", "..") or any(ch in c for ch in "/\\\0")]
    if bad:
        raise ValueError(f"--format folder: class name(s) {bad} cannot be folder names; use --format npz")
    written = Counter()
    for img, k in zip(samples, labels):
        (out / names[k]).mkdir(exist_ok=True)
        to_pil(img).save(out / names[k] / f"{written[k]:06d}.png")
        written[k] += 1
    return sorted({names[k] + "/" for k in labels})


def _tally(mask: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, int]:
    """{class: how many samples of it `mask` selects}."""
    return {c: int(((labels == k) & mask).sum()) for k, c in enumerate(names)}


# ----------------------------------------------------------------------------- the command


def make(run: str, out: str, n: int | None = 100, per_class: dict[str, int] | None = None, seed: int = 0,
         temperature: float | None = None, guidance: float | None = None, max_new_tokens: int = 200,
         judge: str | None = None, min_confidence: float = 0.5, label_from: str | None = None,
         dedup: float | None = None, fmt: str | None = None, overwrite: bool = False,
         command: list[str] | None = None, device: str = "auto", prompts: list[list[str]] | None = None,
         progress: bool = True) -> dict:
    """Generate, filter and write a labelled synthetic set in `out`; returns the manifest (also out/manifest.json)."""
    from . import inference
    if per_class is None and (n is None or n <= 0):
        raise ValueError(f"--n must be a positive number of samples per class, got {n}")
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"--min-confidence must be in [0, 1], got {min_confidence}")
    if dedup is not None and dedup < 0:
        raise ValueError(f"--dedup must be >= 0, got {dedup}")
    out_dir = Path(out)
    check_out(out_dir, overwrite)
    pipe = inference.load(run, device=device)
    kind = _kind(pipe, run)
    fmt = fmt or ("jsonl" if kind == "text" else "folder")
    if (fmt == "jsonl") != (kind == "text"):
        need = "a text generator (label-conditioned GPT)" if fmt == "jsonl" else "an image generator"
        raise ValueError(f"--format {fmt} needs {need}; {run} is a {pipe.family!r} run")
    judge_pipe = inference.load(judge, device=device) if judge else None
    if judge_pipe is not None:
        _check_judge(judge_pipe, kind, judge, pipe)
    names = class_names(pipe, kind, run)
    if not names:
        if label_from is None:
            raise ValueError(f"{run}: a {pipe.family!r} run that is not conditional (no labels to assign); train a "
                             "conditional one (e.g. --preset cdcgan, --data.label_field) or pass --label-from JUDGE")
        labeller = inference.load(label_from, device=device)
        _check_judge(labeller, kind, label_from, pipe)
        names = list(labeller.labels)
        warnings.warn(f"{run} is not conditional: labels are {label_from}'s predictions, as good as that classifier",
                      stacklevel=2)
        counts = class_counts(names, n, per_class)
        samples = _unconditional(pipe, kind, sum(counts.values()), seed, max_new_tokens, temperature)
        labels = labeller.predict_proba(samples).argmax(1).astype(np.int64)
    else:
        counts = class_counts(names, n, per_class)
        samples, labels = generate(pipe, kind, counts, names, seed, temperature, guidance, max_new_tokens, prompts,
                                  progress)

    keep, dropped = apply_filters(pipe, kind, run, samples, labels, names, judge_pipe, judge, min_confidence, dedup)
    generated = _tally(np.ones(len(labels), bool), labels, names)
    kept = _tally(keep, labels, names)
    if not keep.any():
        raise ValueError(f"the filters kept nothing: generated {generated}, dropped {dropped}; lower "
                         "--min-confidence or --dedup")
    idx = np.flatnonzero(keep)
    files = write(out_dir, fmt, _pick(samples, idx, kind), labels[idx], names)
    ckpt = _checkpoint(run)
    doc = {"synthetic": True, "generator": {"run": str(run), "family": pipe.family, "kind": kind,
                                            "checkpoint": str(ckpt), "sha256": sha256_of(ckpt)},
           "command": command if command is not None else sys.argv, "seed": seed,
           "options": {"temperature": temperature, "guidance": guidance,
                       **({"max_new_tokens": max_new_tokens} if kind == "text" else {})},
           "filters": {"judge": None if judge is None else {"run": str(judge), "sha256": sha256_of(_checkpoint(judge)),
                                                             "min_confidence": min_confidence},
                       "dedup": None if dedup is None else {"threshold": dedup, "measure": "text word 4-gram overlap"
                                                            if kind == "text" else "rms pixel distance"},
                       "label_from": label_from},
           "counts": {"generated": generated, "dropped": dropped, "kept": kept, "total": int(keep.sum())},
           "class_names": names, "format": fmt, "files": files, "genforge_version": _version(),
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    manifest_file.write(out_dir, doc)
    return doc


def _check_judge(pipe, kind: str, where: str, gen) -> None:
    """A judge (or --label-from) must be a classifier of the generator's kind: texts, or images of its size."""
    if not hasattr(pipe, "predict_proba") or not hasattr(pipe, "labels"):
        raise ValueError(f"{where}: a {pipe.family!r} run; a judge must be a classifier run")
    image_judge = pipe.family != "classifier"
    if image_judge != (kind != "text"):
        want = "a text classifier run" if kind == "text" else "an image classifier run (imageclf)"
        raise ValueError(f"{where}: a {pipe.family!r} run; this generator's samples need {want}")
    made = (getattr(gen, "image_size", None), getattr(gen, "channels", None))
    if kind != "text" and (pipe.image_size, pipe.channels) != made:
        raise ValueError(f"{where}: the classifier reads {pipe.image_size}x{pipe.image_size}x{pipe.channels} images, "
                         f"the generator makes {made[0]}x{made[0]}x{made[1]}")


def _checkpoint(run: str) -> Path:
    from .run import find_checkpoint
    return find_checkpoint(run)


def _version() -> str:
    from . import __version__
    return __version__
