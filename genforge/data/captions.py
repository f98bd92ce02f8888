"""Captions as model inputs: a word vocabulary built from a data set's captions, shared by the
text-to-image families (the transformer prior's text tokens, the caption-conditioned GAN's encoder).

    vocab = CaptionVocab.build(train.captions)          # every word of the training captions
    ids, unknown = vocab.encode("a small red circle", max_len=16)
    batch = vocab.encode_batch(captions, max_len=16)    # int64 (N, 16), PAD-filled
    CaptionVocab.from_dict(vocab.to_dict())             # stored with the run as JSON

Words are lower-cased runs of letters and digits ("A 7, written by hand." -> a 7 written by hand).
Id 0 is padding (also the empty caption that classifier-free guidance trains on), id 1 an
unknown word. A prompt longer than the caption context is an error naming the limit, never cut.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")
_WORD = re.compile(r"[^\W_]+")


def caption_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass
class CaptionVocab:
    words: list[str]  # id -> word; SPECIALS first

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> CaptionVocab:
        """Every word seen at least `min_count` times, most frequent first (ties alphabetical)."""
        counts = Counter(w for c in captions for w in caption_words(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if not kept:
            raise ValueError("captions: no words to build a caption vocabulary from")
        return cls(list(SPECIALS) + kept)

    def __post_init__(self):
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_len: int, what: str = "prompt") -> tuple[list[int], list[str]]:
        """(ids, unknown words) of one caption; more than `max_len` words is a ValueError naming the limit."""
        words = caption_words(text)
        if len(words) > max_len:
            raise ValueError(f"{what}: {len(words)} words, more than this model's caption context of {max_len} words")
        ids = [self.index.get(w, UNK) for w in words]
        return ids, [w for w, i in zip(words, ids) if i == UNK]

    def encode_batch(self, texts: list[str], max_len: int, what: str = "caption") -> np.ndarray:
        """int64 (N, max_len): each caption's ids, then PAD."""
        out = np.full((len(texts), max_len), PAD, dtype=np.int64)
        for r, text in enumerate(texts):
            ids, _ = self.encode(text, max_len, what)
            out[r, :len(ids)] = ids
        return out

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.words[i] for i in ids if i != PAD)

    def to_dict(self) -> dict:
        return {"kind": "caption-words", "words": self.words}

    @classmethod
    def from_dict(cls, d: dict, where: str = "caption vocabulary") -> CaptionVocab:
        words = d.get("words") if isinstance(d, dict) else None
        if not isinstance(words, list) or d.get("kind") != "caption-words" or list(words[:2]) != list(SPECIALS) \
                or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{where}: not a caption vocabulary (expected kind 'caption-words' and a word list)")
        return cls(list(words))
