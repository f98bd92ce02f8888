"""Hashed n-gram features computed once: a content-hashed cache under $GENFORGE_CACHE/features/.

    from genforge.data import featcache
    x = featcache.transform(featurizer, texts)      # BagFeatures, from the cache when seen before

Hashing 25,000 reviews into uni+bi+trigrams takes most of a run's set-up; training again on the same
texts (another seed, a tuning trial, `eval` after `train`) reads the ids back instead. The key is a
SHA-256 of the featurizer's settings and every text, so any change of either is a new entry; files are
safetensors (ids as int32, offsets as int64). Only the stateless `ngram` featurizer is cached, and only
for MIN_TEXTS texts or more (small lists are faster to hash than to look up). `subset` takes rows of
features already made, so cross-validation folds never tokenise again.
"""
from __future__ import annotations

import hashlib
import json
import os

import torch
from safetensors.torch import load_file, save_file

from .text import cache_dir
from .words import BagFeatures, Featurizer

MIN_TEXTS = 2000


def key(featurizer: Featurizer, texts: list[str]) -> str:
    h = hashlib.sha256(json.dumps(featurizer.to_dict(), sort_keys=True).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()[:32]


def transform(featurizer: Featurizer, texts: list[str]):
    """featurizer.transform(texts), read from / written to the cache for ngram featurizers."""
    if featurizer.kind != "ngram" or len(texts) < MIN_TEXTS:
        return featurizer.transform(texts)
    path = cache_dir() / "features" / f"{key(featurizer, texts)}.safetensors"
    if path.exists():
        t = load_file(str(path))
        return BagFeatures(t["ids"].long(), t["offsets"])
    x = featurizer.transform(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # atomic: a reader never sees half a file
    save_file({"ids": x.ids.int() if featurizer.buckets < 1 << 31 else x.ids, "offsets": x.offsets}, str(tmp))
    os.replace(tmp, path)
    return x


def subset(x: BagFeatures, idx) -> BagFeatures:
    """The rows `idx` of bag features, in that order."""
    ids, starts = x.batch(torch.as_tensor(idx, dtype=torch.int64))
    return BagFeatures(ids, torch.cat([starts, starts.new_tensor([ids.numel()])]))
