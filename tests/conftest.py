"""Shared fixtures: a small corpus, an isolated cache, and the data set folder from the environment."""
import os
from pathlib import Path

import pytest

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 40


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def corpus(tmp_path) -> Path:
    p = tmp_path / "corpus.txt"
    p.write_text(TEXT)
    return p


@pytest.fixture
def datasets() -> Path:
    """$GENFORGE_DATASETS; when it is set, a missing data set is a failure, not a skip."""
    root = os.environ.get("GENFORGE_DATASETS")
    if not root:
        pytest.skip("GENFORGE_DATASETS is not set")
    path = Path(root)
    assert path.is_dir(), f"GENFORGE_DATASETS={root} is not a folder"
    return path


@pytest.fixture
def one_thread():
    """One torch thread: small models run far faster than with threads fighting over shared cores."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_digit_like(n: int = 64, size: int = 28, classes: int = 4, seed: int = 0):
    """Synthetic labelled images: class k is a bright bar in band k, plus noise (uint8 (n, size, size))."""
    import numpy as np
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    images = rng.integers(0, 40, (n, size, size)).astype(np.uint8)
    band = size // classes
    for i, k in enumerate(labels):
        images[i, k * band:(k + 1) * band, 2:-2] = 230
    return images, labels


@pytest.fixture
def image_npz(tmp_path) -> Path:
    """A tiny labelled image set as .npz (64 images, 28x28, 4 classes)."""
    import numpy as np
    images, labels = make_digit_like()
    p = tmp_path / "bars.npz"
    np.savez(p, images=images, labels=labels)
    return p


def make_reviews(n: int = 120, seed: int = 0, labels=(0, 1)) -> list[dict]:
    """Synthetic labelled reviews: each class has its own marker words among shared filler."""
    import random
    rng = random.Random(seed)
    markers = {0: ["awful", "boring", "dull"], 1: ["wonderful", "superb", "loved"], 2: ["okay", "average", "fine"]}
    filler = ["the", "movie", "was", "plot", "actor", "a", "and", "film", "scene"]
    rows = []
    for i in range(n):
        k = i % len(labels)
        words = [rng.choice(filler) for _ in range(12)] + [rng.choice(markers[k]) for _ in range(2)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + " <br /><br /> the end", "label": labels[k]})
    return rows


@pytest.fixture
def reviews(tmp_path) -> Path:
    """A JSONL file of 120 synthetic two-class reviews (labels 0 and 1)."""
    import json
    p = tmp_path / "reviews.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in make_reviews()) + "\n")
    return p


# the head of a `python -c` script that cannot import torch: the ONNX runtime's torch-free tests
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, NoTorch())
"""

BAR_PLACES = ("top", "upper", "lower", "bottom")  # make_digit_like's class k: a bar in band k, top to bottom


def write_captioned_bars(folder: Path, n: int = 64) -> Path:
    """make_digit_like's images as PNGs with captions.jsonl rows ("a bar at the top", label 0, ...)."""
    import json

    from PIL import Image
    images, labels = make_digit_like(n)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (img, k) in enumerate(zip(images, labels)):
        Image.fromarray(img).save(folder / f"{i}.png")
        phrase = ("a bar at the {}", "the {} bar", "one bright bar, {}")[i % 3].format(BAR_PLACES[k])
        rows.append({"image": f"{i}.png", "caption": phrase, "label": int(k)})
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
