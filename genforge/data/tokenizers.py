"""Tokenizers for the GPT family (and any family that reads text).

- `CharTokenizer`: one id per character seen in the corpus (any Unicode, e.g. Chinese).
- `BPETokenizer`: byte-level BPE trained on the corpus with Hugging Face `tokenizers`, or loaded
  from a GPT-2-format directory. Byte-level means every string encodes; nothing is out of vocab.

- `LabelledTokenizer`: either of them plus special tokens after its vocabulary, for label-conditioned
  GPTs (`--data.label_field`): an end-of-document token, then one token per class label.

All serialise to a JSON-able dict (`to_dict` / `tokenizer_from_dict`), which is stored in the run
directory and inside every checkpoint.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

EOT = "<|endoftext|>"
END = "<|end|>"  # a labelled tokenizer's end of document; its labels are written <|label:NAME|>


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


class LabelledTokenizer:
    """A base tokenizer plus special tokens after its vocabulary: the end of a document (id V), then
    one per label (ids V+1 ...). Text that spells a marker (`<|end|>`, `<|label:NAME|>`) encodes to
    its special token, and decode writes special tokens back as markers, so prompts and completions
    of a served labelled run can name them."""

    def __init__(self, base: CharTokenizer | BPETokenizer, labels: list[str]):
        if not labels or len(set(labels)) != len(labels):
            raise ValueError(f"a labelled tokenizer needs distinct labels, got {labels!r}")
        self.base, self.labels, self.kind = base, list(labels), base.kind
        self.eot_id = base.vocab_size  # the end-of-document token
        self.label_ids = {name: base.vocab_size + 1 + i for i, name in enumerate(self.labels)}
        self.markers = [END] + [f"<|label:{name}|>" for name in self.labels]  # markers[id - base.vocab_size]
        self._split = re.compile("(" + "|".join(map(re.escape, self.markers)) + ")")

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + len(self.markers)

    def encode(self, text: str, where: str = "text") -> list[int]:
        ids: list[int] = []
        for i, piece in enumerate(self._split.split(text)):  # odd pieces are markers
            if i % 2:
                ids.append(self.base.vocab_size + self.markers.index(piece))
            elif piece:
                ids.extend(self.base.encode(piece, where))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        out, run, V = [], [], self.base.vocab_size
        for i in ids:
            if i < V:
                run.append(i)
            else:
                out += [self.base.decode(run), self.markers[i - V]]
                run = []
        return "".join(out) + self.base.decode(run)

    def to_dict(self) -> dict:
        return {"kind": "labelled", "base": self.base.to_dict(), "labels": self.labels}


Tokenizer = CharTokenizer | BPETokenizer | LabelledTokenizer


def tokenizer_from_dict(d: dict) -> Tokenizer:
    kind = d.get("kind")
    if kind == "labelled":
        return LabelledTokenizer(tokenizer_from_dict(d["base"]), d["labels"])
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
