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
