"""Text -> model inputs for classifiers: HTML clean-up, word vocabularies, hashed n-grams.

A `Featurizer` turns a list of texts into tensors, in one of four ways (`data.tokenizer`):
- `word`: the top-k words (ids 0 = padding, 1 = out of vocabulary), padded/truncated to
  `max_len` like Keras' `pad_sequences` (article 004);
- `ngram`: the set of word n-grams (1..n) of each text, hashed into `buckets` ids (fastText
  style: no vocabulary to store, unseen n-grams still map somewhere); with `char_ngrams=(lo, hi)`
  also the character lo..hi-grams inside each word, marked `<word>` (fastText's subwords), in the
  same buckets: they carry short texts, where a word seen once in training is the rule;
- `char` / `bpe`: the GPT family's tokenizers (genforge/data/tokenizers.py), for transformer
  classifiers and for fine-tuning a pre-trained GPT.
It serialises to a JSON-able dict stored with the run, so `classify` rebuilds it exactly.
"""
from __future__ import annotations

import html
import re
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made: the ONNX runtime reads `words` without it
    import torch

from .tokenizers import CharTokenizer, tokenizer_from_dict, train_tokenizer

_TAG = re.compile(r"<[^>]{0,200}>")
_WORDS = re.compile(r"\w+(?:'\w+)*")
_WORDS_PUNCT = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
PAD, OOV = 0, 1


def clean_text(text: str) -> str:
    """Markup -> spaces (`<br />` is all over IMDB), entities unescaped, lower case."""
    return html.unescape(_TAG.sub(" ", text)).lower()


def words(text: str, punctuation: bool = False) -> list[str]:
    return (_WORDS_PUNCT if punctuation else _WORDS).findall(clean_text(text))


# ----------------------------------------------------------------------------- feature containers


@dataclass
class SeqFeatures:
    ids: torch.Tensor  # (N, T) token ids, padded with 0
    lengths: torch.Tensor  # (N,) real tokens per row (>= 1)
    pad: str  # 'pre' (padding before the text) or 'post'

    def __len__(self) -> int:
        return self.ids.size(0)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.ids[idx], self.lengths[idx]


@dataclass
class BagFeatures:
    ids: torch.Tensor  # (total,) distinct n-gram ids of all texts, concatenated
    offsets: torch.Tensor  # (N + 1,) text i owns ids[offsets[i]:offsets[i + 1]]

    def __len__(self) -> int:
        return self.offsets.numel() - 1

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        import torch
        starts = self.offsets[idx]
        sizes = self.offsets[idx + 1] - starts  # (B,) ids per text
        batch_offsets = torch.cumsum(sizes, 0) - sizes  # (B,) where each text starts in the batch
        at = torch.repeat_interleave(starts - batch_offsets, sizes) + torch.arange(int(sizes.sum()))  # (total,)
        return self.ids[at], batch_offsets  # (total,), (B,)

    def counts(self, y: np.ndarray, num_classes: int, buckets: int) -> np.ndarray:
        """(K, buckets): in how many texts of each class every id occurs."""
        sizes = (self.offsets[1:] - self.offsets[:-1]).numpy()
        cls = np.repeat(y, sizes)
        flat = cls * buckets + self.ids.numpy()
        return np.bincount(flat, minlength=num_classes * buckets).reshape(num_classes, buckets)


# ----------------------------------------------------------------------------- hashing


_P = np.uint64(0x100000001B3)  # FNV prime: mixes a word hash into the n-gram hash


def _word_hashes(tokens: list[str], cache: dict[str, int]) -> np.ndarray:
    out = np.empty(len(tokens), dtype=np.uint64)
    for i, w in enumerate(tokens):
        h = cache.get(w)
        if h is None:
            h = cache[w] = zlib.crc32(w.encode("utf-8")) | (len(w) << 32)
        out[i] = h
    return out


def _mix(h: np.ndarray, order: int, buckets: int) -> np.ndarray:
    """Token hashes -> bucket ids; `order` (n of a word n-gram, 0 for a character n-gram) salts the hash."""
    with np.errstate(over="ignore"):
        return ((h + np.uint64(order) * np.uint64(0x9E3779B97F4A7C15)) * _P >> np.uint64(17)) % np.uint64(buckets)


def _char_hashes(word: str, lo: int, hi: int) -> np.ndarray:
    """Hashes of the character lo..hi-grams of `<word>` (the marks make prefixes and suffixes distinct)."""
    w = f"<{word}>"
    grams = [w[i:i + n] for n in range(lo, hi + 1) for i in range(len(w) - n + 1)]
    return np.array([zlib.crc32(g.encode("utf-8")) | (len(g) << 32) for g in grams], dtype=np.uint64)


def hashed_ngrams(token_lists: list[list[str]], n: int, buckets: int,
                  char_ngrams: tuple[int, int] = (0, 0)) -> BagFeatures:
    """Distinct hashed word 1..n-grams (and character n-grams of its words) of each text (binary bag),
    deterministic across runs."""
    import torch
    ids, offsets = ngram_ids(token_lists, n, buckets, char_ngrams)
    return BagFeatures(torch.from_numpy(ids), torch.from_numpy(offsets))


def ngram_ids(token_lists: list[list[str]], n: int, buckets: int,
              char_ngrams: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """hashed_ngrams in numpy alone (the ONNX runtime's featurizer): ids (total,), offsets (N + 1,)."""
    cache: dict[str, int] = {}
    lens = np.array([len(t) for t in token_lists], dtype=np.int64)
    flat = _word_hashes([w for t in token_lists for w in t], cache)  # (total tokens,)
    doc = np.repeat(np.arange(len(token_lists), dtype=np.int64), lens)
    parts_doc, parts_id = [], []
    h = flat.copy()
    for order in range(1, n + 1):
        if order > 1:  # h[i] = hash of tokens i .. i+order-1, valid if they are in one text
            with np.errstate(over="ignore"):
                h = h[:-1] * _P + flat[order - 1:]
        keep = doc[:len(h)] == doc[order - 1:order - 1 + len(h)]
        parts_doc.append(doc[:len(h)][keep])
        parts_id.append(_mix(h[keep], order, buckets))
    if char_ngrams[0] > 0 and len(flat):
        uniq, wid = np.unique(flat, return_inverse=True)  # (W,) distinct words, (total tokens,) word of each
        word_of = {v: w for w, v in cache.items()}
        table = [_char_hashes(word_of[int(v)], *char_ngrams) for v in uniq]
        sizes = np.array([len(t) for t in table], dtype=np.int64)  # (W,) n-grams per word
        pair = np.unique(doc * len(uniq) + wid)  # each text's distinct words
        pd, pw = pair // len(uniq), pair % len(uniq)
        k = sizes[pw]  # (pairs,) n-grams each pair brings
        at = np.repeat(np.cumsum(sizes)[pw] - sizes[pw] - (np.cumsum(k) - k), k) + np.arange(k.sum())
        parts_doc.append(np.repeat(pd, k))
        parts_id.append(_mix(np.concatenate(table)[at], 0, buckets))
    docs = np.concatenate(parts_doc)
    ids = np.concatenate(parts_id).astype(np.int64)
    key = np.unique(docs * buckets + ids)  # sorted by text, then id; duplicates removed
    docs, ids = key // buckets, key % buckets
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
    np.cumsum(np.bincount(docs, minlength=len(token_lists)), out=offsets[1:])
    return ids, offsets


# ----------------------------------------------------------------------------- featurizer


class Featurizer:
    """texts -> SeqFeatures or BagFeatures; `fit` learns the vocabulary from training texts."""

    def __init__(self, kind: str, max_len: int = 100, vocab_size: int = 10000, ngram: int = 2,
                 buckets: int = 1 << 21, pad: str = "pre", punctuation: bool = False, max_chars: int = 100_000,
                 tokenizer=None, vocab: list[str] | None = None, char_ngrams: tuple[int, int] = (0, 0)):
        if kind not in ("word", "ngram", "char", "bpe"):
            raise ValueError(f"data.tokenizer={kind!r}: expected word, ngram, char or bpe")
        self.kind, self.max_len, self.vocab_size, self.ngram = kind, max_len, vocab_size, ngram
        self.buckets, self.pad, self.punctuation = buckets, pad, punctuation
        self.max_chars = max_chars  # longer texts are cut here first (a notice is printed once)
        self.char_ngrams = tuple(char_ngrams)  # ngram: (lo, hi) character n-grams of each word; (0, 0) = none
        self.tokenizer = tokenizer  # a GPT tokenizer for char / bpe
        self.vocab = vocab  # words for kind 'word', index = id (0 pad, 1 oov)
        self._stoi = {w: i for i, w in enumerate(vocab)} if vocab else None
        self._said: set[str] = set()

    @property
    def num_ids(self) -> int:
        """Size of the id space the model embeds."""
        if self.kind == "ngram":
            return self.buckets
        if self.kind == "word":
            return len(self.vocab)
        return self.tokenizer.vocab_size

    def fit(self, texts: list[str]) -> Featurizer:
        texts = self.clip(texts)
        if self.kind == "word":
            counts = Counter(w for t in texts for w in words(t, self.punctuation))
            top = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:self.vocab_size - 2]]
            self.vocab = ["<pad>", "<oov>"] + top
            self._stoi = {w: i for i, w in enumerate(self.vocab)}
        elif self.kind in ("char", "bpe") and self.tokenizer is None:
            self.tokenizer = train_tokenizer(self.kind, lambda: iter(texts), self.vocab_size)
        return self

    def _say_once(self, message: str) -> None:
        """Print a notice the first time its kind (the text before any parenthesis) comes up."""
        key = message.split(" (")[0]
        if key not in self._said:
            self._said.add(key)
            print(f"genforge: {message}", file=sys.stderr)

    def _ids(self, text: str) -> list[int]:
        if self.kind == "word":
            return [self._stoi.get(w, OOV) for w in words(text, self.punctuation)]
        if isinstance(self.tokenizer, CharTokenizer):  # unseen characters are dropped
            stoi = self.tokenizer.stoi
            return [stoi[c] for c in text if c in stoi]
        return self.tokenizer.encode(text)

    def clip(self, texts: list[str]) -> list[str]:
        long = sum(len(t) > self.max_chars for t in texts)
        if not long:
            return texts
        self._say_once(f"texts longer than data.max_chars={self.max_chars:,} characters are cut to their first "
                       f"{self.max_chars:,} (first seen: {long:,} of {len(texts):,} texts)")
        return [t[:self.max_chars] for t in texts]

    def transform(self, texts: list[str]) -> SeqFeatures | BagFeatures:
        import torch
        texts = self.clip(texts)
        if self.kind == "ngram":
            return hashed_ngrams([words(t, self.punctuation) for t in texts], self.ngram, self.buckets,
                                 self.char_ngrams)
        rows = [self._ids(t) for t in texts]
        T = self.max_len
        ids = torch.zeros(len(rows), T, dtype=torch.int64)
        lengths = torch.ones(len(rows), dtype=torch.int64)
        long = 0
        for i, r in enumerate(rows):
            if len(r) > T:
                long += 1
                r = r[-T:] if self.pad == "pre" else r[:T]  # keep the end (pre) or the start (post)
            if not r:
                continue  # nothing left after tokenization: one padding token, the model sees 'empty'
            lengths[i] = len(r)
            if self.pad == "pre":
                ids[i, T - len(r):] = torch.tensor(r)
            else:
                ids[i, :len(r)] = torch.tensor(r)
        if long:
            kept = "last" if self.pad == "pre" else "first"
            self._say_once(f"texts longer than data.max_len={T} tokens are truncated to their {kept} {T} "
                           f"tokens (first seen: {long:,} of {len(rows):,} texts)")
        return SeqFeatures(ids, lengths, self.pad)

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "max_len": self.max_len, "vocab_size": self.vocab_size, "ngram": self.ngram,
             "buckets": self.buckets, "pad": self.pad, "punctuation": self.punctuation,
             "max_chars": self.max_chars, "char_ngrams": list(self.char_ngrams)}
        if self.vocab is not None:
            d["vocab"] = self.vocab
        if self.tokenizer is not None:
            d["tokenizer"] = self.tokenizer.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Featurizer:
        tok = tokenizer_from_dict(d["tokenizer"]) if "tokenizer" in d else None
        return cls(d["kind"], d["max_len"], d["vocab_size"], d["ngram"], d["buckets"], d["pad"],
                   d["punctuation"], d["max_chars"], tokenizer=tok, vocab=d.get("vocab"),
                   char_ngrams=d.get("char_ngrams", (0, 0)))
