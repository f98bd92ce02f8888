"""Download public data sets into the cache, verified by sha256.

    genforge data get shakespeare [--dir DIR] [--mirror URL]
    genforge data get imdb        # aclImdb_v1.tar.gz (84 MB), unpacked to <folder>/aclImdb/train|test

Files land in `$GENFORGE_CACHE/datasets/<name>/` (default ~/.cache/genforge). A file already
there with the right checksum is not fetched again; a download with the wrong checksum is
deleted and reported. `--mirror` replaces the base URL (for mirrors and tests). Archives marked
`extract` are unpacked next to themselves once (tar's "data" filter: no paths outside the folder,
no links out, no device files).
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .text import cache_dir


@dataclass(frozen=True)
class Remote:
    url: str
    sha256: str
    extract: str = ""  # a .tar.gz: the top-level folder it unpacks to ('' = not an archive)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


DATASETS: dict[str, list[Remote]] = {
    "shakespeare": [Remote("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                           "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")],
    "mnist": [Remote(f"https://ossci-datasets.s3.amazonaws.com/mnist/{name}", sha) for name, sha in [
        ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")]],
    # Large Movie Review Dataset v1.0 (Maas et al., 2011): aclImdb/{train,test}/{pos,neg}/*.txt
    "imdb": [Remote("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                    "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe", extract="aclImdb")],
}


class ChecksumError(ValueError):
    pass


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, dest: Path, sha256: str, progress: bool) -> None:
    from tqdm import tqdm
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    f.write(block)
                    bar.update(len(block))
        got = sha256_of(tmp)
        if got != sha256:
            raise ChecksumError(f"{url}: sha256 mismatch (expected {sha256}, got {got}); the file was "
                                "not kept. The download was corrupted or the source changed.")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def get(name: str, directory: str | os.PathLike | None = None, mirror: str | None = None,
        progress: bool = True) -> Path:
    """Fetch every file of data set `name`; return the folder holding them."""
    if name not in DATASETS:
        from ..config import closest
        raise ValueError(f"unknown data set '{name}'{closest(name, DATASETS)}; available: {', '.join(DATASETS)}")
    folder = Path(directory) if directory else cache_dir() / "datasets" / name
    folder.mkdir(parents=True, exist_ok=True)
    for remote in DATASETS[name]:
        dest = folder / remote.filename
        if not (dest.exists() and sha256_of(dest) == remote.sha256):
            url = mirror.rstrip("/") + "/" + remote.filename if mirror else remote.url
            _fetch(url, dest, remote.sha256, progress)
        if remote.extract:
            _extract(dest, folder, remote.extract)
    return folder


def _extract(archive: Path, folder: Path, top: str) -> None:
    """Unpack a verified .tar.gz into folder (once: a finished unpack leaves a marker file)."""
    done = folder / f".{top}.extracted"
    if done.exists() and (folder / top).is_dir():
        return
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(folder, filter="data")
    except tarfile.TarError as e:
        raise ValueError(f"{archive}: refused to unpack ({e})") from None
    if not (folder / top).is_dir():
        raise ValueError(f"{archive}: unpacked, but holds no '{top}' folder")
    done.write_text(archive.name + "\n")
