"""The shapes set: 32x32 RGB images of one or two coloured shapes, drawn with Pillow, captioned.

    genforge train text2image --data shapes        # every image family takes data.path "shapes"
    data = shapes.load("train")                    # 20k images; "test" 2k, "held_out_combos" 1k
    shapes.attributes("a small red circle at the top left")
    # {'colour': 'red', 'shape': 'circle', 'size': 'small', 'position': 'top left'}

One shape has a colour, a kind, a size and a position (a 3x3 grid: "top left" ... "centre" ...
"bottom right"); two shapes ("a blue square above a green triangle") have a colour and kind each and
a relation. Two-shape attributes are canonical: the first shape is the upper (relation "above") or
the left one ("left of"), so "a green triangle below a blue square" reads as the blue square above.

Captions come in several phrasings; HELD_OUT_FORMS are never used for training captions, only by
the evaluation. HELD_OUT_COMBOS (every green triangle, every blue circle) never appear in the
"train" or "test" split, only in "held_out_combos", to measure whether a model composes a colour
and a kind it saw only apart. Labels (for families that want classes, and the feature network) are
the first shape's colour and kind, 15 classes named "red circle" ... "white triangle" (the held-out
ones have no train or test image). Every split is seeded and fixed, rendered once and cached under
$GENFORGE_CACHE/shapes/.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .captions import caption_words
from .images import ImageSet
from .text import cache_dir

RECIPE = "shapes/1"  # bump when drawing, attributes or captions change
SIZE = 32
COLOURS = {"red": (220, 50, 50), "green": (40, 190, 60), "blue": (50, 90, 240), "yellow": (235, 215, 40),
           "white": (235, 235, 235)}
KINDS = ("circle", "square", "triangle")
SIZES = {"small": 5, "large": 9}  # half-width in pixels
POSITIONS = ("top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right")
RELATIONS = ("above", "left of")  # canonical; captions also say "below" / "to the right of"
HELD_OUT_COMBOS = (("green", "triangle"), ("blue", "circle"))
CLASS_NAMES = [f"{c} {k}" for c in COLOURS for k in KINDS]
SPLIT_SIZES = {"train": 20_000, "test": 2_000, "held_out_combos": 1_000}
TWO_SHAPE_SHARE = 0.3  # of the images, two shapes; the rest one
TWO_SHAPE_SIZE = 6  # half-width of each of two shapes

# caption forms; {where} is a position phrase ("at the top left", "in the centre", "on the left")
ONE_FORMS = {"train": ["a {size} {colour} {shape} {where}", "{where}, a {size} {colour} {shape}",
                       "a {colour} {shape}, {size}, {where}"],
             "held_out": ["there is a {size} {colour} {shape} {where}", "{size} {colour} {shape} {where}"]}
TWO_FORMS = {"train": ["a {colour} {shape} {relation} a {colour2} {shape2}",
                       "a {colour2} {shape2} {inverse} a {colour} {shape}"],
             "held_out": ["there is a {colour} {shape} {relation} a {colour2} {shape2}",
                          "{colour2} {shape2} {inverse} {colour} {shape}"]}
PHRASES = {"above": "above", "below": "below", "left of": "to the left of", "right of": "to the right of"}


def where(position: str) -> str:
    return {"centre": "in the centre", "left": "on the left", "right": "on the right"}.get(position,
                                                                                          f"at the {position}")


def phrase(form: str, attrs: dict) -> str:
    """One caption form (of ONE_FORMS / TWO_FORMS) filled in with `attrs`."""
    relation = attrs.get("relation", "")
    inverse = {"above": "below", "left of": "right of"}.get(relation, "")
    return form.format(**{**attrs, "where": where(attrs.get("position", "")), "relation": PHRASES.get(relation, ""),
                          "inverse": PHRASES.get(inverse, "")})


def caption(attrs: dict, rng: np.random.Generator, split: str = "train") -> str:
    """A caption of `attrs` in one of `split`'s ('train' or 'held_out') phrasings, drawn with `rng`."""
    if split not in ONE_FORMS:
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    forms = (TWO_FORMS if "relation" in attrs else ONE_FORMS)[split]
    return phrase(forms[int(rng.integers(len(forms)))], attrs)


def attributes(text: str) -> dict:
    """What a caption asks for: colour, shape, size, position; or for two shapes colour, shape,
    relation ('above' / 'left of'), colour2, shape2 (canonical order). A ValueError names what is missing."""
    words = caption_words(text)
    colours = [w for w in words if w in COLOURS]
    kinds = [w for w in words if w in KINDS]
    if len(kinds) not in (1, 2) or len(colours) != len(kinds):
        raise ValueError(f"caption {text!r}: expected one or two shapes, each with a colour "
                         f"({', '.join(COLOURS)}) and a kind ({', '.join(KINDS)})")
    if len(kinds) == 2:
        relation = next((w for w in words if w in ("above", "below", "left", "right")), None)
        if relation is None:
            raise ValueError(f"caption {text!r}: two shapes but no relation (above, below, left of, right of)")
        first, second = ((colours[0], kinds[0]), (colours[1], kinds[1]))
        if relation in ("below", "right"):
            first, second = second, first
        return {"colour": first[0], "shape": first[1], "relation": "above" if relation in ("above", "below")
                else "left of", "colour2": second[0], "shape2": second[1]}
    size = next((w for w in words if w in SIZES), None)
    vertical = next((w for w in words if w in ("top", "bottom")), "")
    horizontal = next((w for w in words if w in ("left", "right")), "")
    position = f"{vertical} {horizontal}".strip() or ("centre" if {"centre", "center", "middle"} & set(words) else "")
    if size is None or not position:
        raise ValueError(f"caption {text!r}: one shape needs a size ({', '.join(SIZES)}) and a position "
                         "(e.g. 'at the top left', 'in the centre')")
    return {"colour": colours[0], "shape": kinds[0], "size": size, "position": position}


def label(attrs: dict) -> int:
    """The class of an image: its (first) shape's colour and kind, an index into CLASS_NAMES."""
    return CLASS_NAMES.index(f"{attrs['colour']} {attrs['shape']}")


# ----------------------------------------------------------------------------- drawing


SCALE = 4  # draw at 4x and downsample: smooth edges


def _draw(draw, kind: str, cx: float, cy: float, r: float, colour: tuple[int, int, int]) -> None:
    cx, cy, r = cx * SCALE, cy * SCALE, r * SCALE
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "square":
        r *= 0.85  # about a circle's area
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=colour)


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int]) -> tuple[int, ...]:
    return tuple(int(v) for v in np.clip(np.array(colour) + rng.integers(-15, 16, 3), 0, 255))


def _grid(cell: int, r: float, rng: np.random.Generator) -> float:
    """A coordinate in grid cell 0, 1 or 2 (of 3) for a shape of half-width r, jittered inside its cell."""
    lo, hi = r + 3, SIZE - 3 - r
    step = (hi - lo) / 2
    return lo + cell * step + rng.uniform(-step / 4, step / 4)


def render(attrs: dict, rng: np.random.Generator) -> np.ndarray:
    """uint8 (32, 32, 3): the shapes `attrs` describes (as `attributes` returns them), on a dark background."""
    from PIL import Image, ImageDraw
    grey = int(rng.integers(0, 40))
    img = Image.new("RGB", (SIZE * SCALE, SIZE * SCALE), (grey, grey, grey))
    draw = ImageDraw.Draw(img)
    if "relation" in attrs:
        r = TWO_SHAPE_SIZE
        near, far = rng.uniform(r + 1, r + 5), rng.uniform(SIZE - r - 5, SIZE - r - 1)  # along the relation
        across = rng.uniform(r + 4, SIZE - r - 4)
        a, b = across + rng.uniform(-3, 3), across + rng.uniform(-3, 3)  # across it: nearly aligned
        (x1, y1), (x2, y2) = ((a, near), (b, far)) if attrs["relation"] == "above" else ((near, a), (far, b))
        _draw(draw, attrs["shape"], x1, y1, r, _jitter(rng, COLOURS[attrs["colour"]]))
        _draw(draw, attrs["shape2"], x2, y2, r, _jitter(rng, COLOURS[attrs["colour2"]]))
    else:
        r = SIZES[attrs["size"]]
        cell = POSITIONS.index(attrs["position"])
        x, y = _grid(cell % 3, r, rng), _grid(cell // 3, r, rng)  # (column, row) of the 3x3 grid
        _draw(draw, attrs["shape"], x, y, r, _jitter(rng, COLOURS[attrs["colour"]]))
    return np.asarray(img.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.uint8)


def _combo(rng: np.random.Generator, held_out: bool | None) -> tuple[str, str]:
    """A (colour, kind): one of HELD_OUT_COMBOS if `held_out`, any other if False, any at all if None."""
    pool = [(c, k) for c in COLOURS for k in KINDS if held_out is None or ((c, k) in HELD_OUT_COMBOS) == held_out]
    return pool[int(rng.integers(len(pool)))]


def sample_attributes(rng: np.random.Generator, held_out_combo: bool | None = False) -> dict:
    """Random attributes of one image; with `held_out_combo` at least one shape is a held-out combination,
    without none is, and with None (the judge's training renders) any may be."""
    if rng.random() >= TWO_SHAPE_SHARE:
        colour, kind = _combo(rng, held_out_combo)
        return {"colour": colour, "shape": kind, "size": list(SIZES)[int(rng.integers(len(SIZES)))],
                "position": POSITIONS[int(rng.integers(len(POSITIONS)))]}
    first, second = _combo(rng, held_out_combo), _combo(rng, None if held_out_combo is None else
                                                         bool(held_out_combo and rng.random() < 0.5))
    if rng.random() < 0.5:
        first, second = second, first
    return {"colour": first[0], "shape": first[1], "relation": RELATIONS[int(rng.integers(len(RELATIONS)))],
            "colour2": second[0], "shape2": second[1]}


def render_set(n: int, seed: int, held_out_combos: bool | None = False) -> ImageSet:
    """n seeded images with one training-phrasing caption each and first-shape colour+kind labels."""
    rng = np.random.default_rng(seed)
    attrs = [sample_attributes(rng, held_out_combos) for _ in range(n)]
    images = np.stack([render(a, rng) for a in attrs]) if n else np.zeros((0, SIZE, SIZE, 3), np.uint8)
    captions = [caption(a, rng, "train") for a in attrs]
    return ImageSet(images, np.array([label(a) for a in attrs], np.int64), list(CLASS_NAMES),
                    f"shapes ({n} images, seed {seed})", captions)


def load(split: str = "train") -> ImageSet:
    """A split ('train', 'test' or 'held_out_combos') of the shapes set, of SPLIT_SIZES[split] images;
    rendered once, then read from the cache."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"shapes: split must be one of {', '.join(SPLIT_SIZES)}, got {split!r}")
    n, seed = SPLIT_SIZES[split], list(SPLIT_SIZES).index(split)
    source = f"shapes ({split} split)"
    path = cache_dir() / "shapes" / f"{RECIPE.replace('/', '-')}-{split}-{n}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return ImageSet(f["images"], f["labels"], list(CLASS_NAMES), source, f["captions"].tolist())
    data = render_set(n, seed, held_out_combos=split == "held_out_combos")
    _save(path, images=data.images, labels=data.labels, captions=np.array(data.captions))
    data.source = source
    return data


def _save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
