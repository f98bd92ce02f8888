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
