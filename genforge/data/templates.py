"""Caption templates: a labelled image set (MNIST, digits, faces, class folders) becomes a captioned one.

    train = templates.captioned(images.load("mnist", 28, 1), seed=0)   # "a handwritten seven", ...
    templates.prompts(["0", "1"], "held_out")   # per class, every held-out phrasing filled in

Digit classes ('0'..'9') read as digits: {word} is the number word ("seven"), {name} the numeral
("7"); any other class name is a thing ("a photo of {name}"), with {word} == {name} and '_' / '-'
read as spaces. The held-out templates share no phrasing with the training ones and are used only
for evaluation, to measure whether a model follows a caption it was never trained on.
"""
from __future__ import annotations

import re

import numpy as np

from .images import ImageSet

TRAIN_TEMPLATES = ["a handwritten {word}", "the digit {name}", "a {name}, written by hand", "the number {word}",
                   "a {word}", "{name}"]
HELD_OUT_TEMPLATES = ["an image of the digit {word}", "the handwritten number {name}", "a {word} written by hand"]
THING_TRAIN_TEMPLATES = ["a photo of {name}", "a picture of {name}", "{name}", "an image of {name}"]
THING_HELD_OUT_TEMPLATES = ["a photograph of {name}", "a small picture of a {name}"]

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPLITS = ("train", "held_out")
_A_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou8])")  # "a eight" / "a 8" -> "an eight" / "an 8"


def is_digits(class_names: list[str]) -> bool:
    return bool(class_names) and all(n in NUMBER_WORDS or (len(n) == 1 and n.isdecimal()) for n in class_names)


def templates(split: str, digits: bool) -> list[str]:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if digits:
        return TRAIN_TEMPLATES if split == "train" else HELD_OUT_TEMPLATES
    return THING_TRAIN_TEMPLATES if split == "train" else THING_HELD_OUT_TEMPLATES


def fill(template: str, class_name: str, digits: bool) -> str:
    """One template filled with a class name ('7' -> word 'seven', name '7')."""
    if digits:
        name = str(NUMBER_WORDS.index(class_name)) if class_name in NUMBER_WORDS else class_name
        word = NUMBER_WORDS[int(name)]
    else:
        name = word = re.sub(r"[_\-]+", " ", class_name).strip()
    return _A_BEFORE_VOWEL.sub("an ", template.format(word=word, name=name))


def caption_for(class_name: str, rng: np.random.Generator, split: str = "train", digits: bool | None = None) -> str:
    """A caption of one image of `class_name`, its template drawn from `split`'s with `rng`.

    `digits` (default: whether `class_name` is a digit) picks the digit or the thing templates.
    """
    digits = is_digits([class_name]) if digits is None else digits
    options = templates(split, digits)
    return fill(options[int(rng.integers(len(options)))], class_name, digits)


def captioned(data: ImageSet, seed: int, split: str = "train") -> ImageSet:
    """`data` with captions: its own if it has them, else one seeded template caption per image from its labels."""
    if data.captions is not None:
        return data
    if data.labels is None or not data.class_names:
        raise ValueError(f"{data.source or 'image set'}: neither captions nor labels; a text-to-image model needs "
                         "one of them (a captions.jsonl, or class sub-folders / labels)")
    rng = np.random.default_rng(seed)
    digits = is_digits(data.class_names)
    captions = [caption_for(data.class_names[int(y)], rng, split, digits) for y in data.labels]
    return ImageSet(data.images, data.labels, data.class_names, data.source, captions)


def prompts(class_names: list[str], split: str = "train") -> list[list[str]]:
    """Per class, every template of `split` filled in with its name."""
    digits = is_digits(class_names)
    return [[fill(t, name, digits) for t in templates(split, digits)] for name in class_names]
