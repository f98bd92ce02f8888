"""Tokenizers for the GPT family (and any family that reads text).

- `CharTokenizer`: one id per character seen in the corpus (any Unicode, e.g. Chinese).
- `BPETokenizer`: byte-level BPE trained on the corpus with Hugging Face `tokenizers`, or loaded
  from a GPT-2-format directory. Byte-level means every string encodes; nothing is out of vocab.

Both serialise to a JSON-able dict (`to_dict` / `tokenizer_from_dict`), which is stored in the run
directory and inside every checkpoint.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

EOT = "<|endoftext|>"


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: Iterable[str]):
        self.chars = sorted(set(chars))
        if not self.chars:
            raise ValueError("cannot build a character vocabulary from an empty corpus")
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.eot_id: int | None = None

    @classmethod
    def train(cls, chunks: Iterable[str]) -> CharTokenizer:
        seen: set[str] = set()
        for chunk in chunks:
            seen.update(chunk)
        return cls(seen)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str, where: str = "text") -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            pos = next(i for i, c in enumerate(text) if c not in self.stoi)
            ch = text[pos]
            raise ValueError(f"{where}: character {ch!r} (U+{ord(ch):04X}) at position {pos} is not in "
                             f"this model's {self.vocab_size}-character vocabulary") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": "".join(self.chars)}


class BPETokenizer:
    kind = "bpe"

    def __init__(self, tok):
        self.tok = tok  # tokenizers.Tokenizer
        self.eot_id = tok.token_to_id(EOT)

    @classmethod
    def train(cls, chunks: Iterable[str], vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        if vocab_size < 257 + 1:
            raise ValueError(f"data.vocab_size={vocab_size}: byte-level BPE needs at least 258 "
                             "(256 bytes + end-of-text + merges)")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(chunks, trainer=trainer)
        return cls(tok)

    @classmethod
    def from_pretrained_dir(cls, path: str | Path) -> BPETokenizer:
        """A GPT-2-format tokenizer: tokenizer.json, or vocab.json + merges.txt."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        path = Path(path)
        if (path / "tokenizer.json").exists():
            return cls(Tokenizer.from_file(str(path / "tokenizer.json")))
        vocab, merges = path / "vocab.json", path / "merges.txt"
        if not (vocab.exists() and merges.exists()):
            raise FileNotFoundError(f"{path}: no tokenizer.json, nor vocab.json + merges.txt")
        tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str, where: str = "text") -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokenizer": json.loads(self.tok.to_str())}


Tokenizer = CharTokenizer | BPETokenizer


def tokenizer_from_dict(d: dict) -> Tokenizer:
    kind = d.get("kind")
    if kind == "char":
        return CharTokenizer(d["chars"])
    if kind == "bpe":
        from tokenizers import Tokenizer as HFTokenizer
        return BPETokenizer(HFTokenizer.from_str(json.dumps(d["tokenizer"])))
    raise ValueError(f"unknown tokenizer kind {kind!r} (expected 'char' or 'bpe')")


def train_tokenizer(kind: str, chunks_fn, vocab_size: int) -> Tokenizer:
    """`chunks_fn()` returns a fresh iterator of text chunks (a corpus may be read twice)."""
    if kind == "char":
        return CharTokenizer.train(chunks_fn())
    if kind == "bpe":
        return BPETokenizer.train(chunks_fn(), vocab_size)
    raise ValueError(f"data.tokenizer={kind!r}: expected 'char' or 'bpe'")


class StreamDecoder:
    """Turns a stream of token ids into text pieces, holding back incomplete UTF-8 sequences."""

    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self.ids: list[int] = []
        self.emitted = 0

    def push(self, ids: Iterable[int]) -> str:
        self.ids.extend(ids)
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):  # a multi-byte character is not complete yet
            return ""
        piece = text[self.emitted:]
        self.emitted = len(text)
        if len(self.ids) > 64:  # keep the decode window short: restart after a full character
            self.ids, self.emitted = [], 0
        return piece
