"""Text corpora: read .txt / folders / JSONL, encode once into cached memory-mapped token files.

A corpus is streamed in chunks of whole lines (never read whole), encoded with a progress bar and
written to `<cache>/tokens/<hash>.bin`, keyed by the corpus bytes and the tokenizer, so a second
run on the same data starts instantly and a corpus larger than RAM trains with bounded memory.

With a label field (`genforge train gpt --data reviews.jsonl --data.label_field=label`) every JSONL
row becomes [label token][text tokens][end token] in the stream (see tokenizers.LabelledTokenizer).
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .labelled import _label, label_vocabulary
from .rows import json_lines
from .shards import Shares
from .tokenizers import LabelledTokenizer, Tokenizer

CHUNK_BYTES = 1 << 20


def cache_dir() -> Path:
    return Path(os.environ.get("GENFORGE_CACHE", Path.home() / ".cache" / "genforge"))


TEXT_SUFFIXES = (".txt", ".text", ".md")  # read as plain text in a folder (also .gz-compressed)
JSONL_SUFFIXES = (".jsonl", ".json")  # one JSON object per line, the text in data.text_field
_told: set[str] = set()  # folders whose skipped files were already reported


def corpus_files(path: str | os.PathLike) -> list[Path]:
    """The files of a corpus: the file itself, or the .txt/.text/.md/.jsonl/.json files (optionally .gz) under
    a folder (sorted); the folder's other files are skipped, and said so once on stderr."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file or folder not found: {path}")
    if path.is_dir():
        files, skipped = [], []
        for p in sorted(p for p in path.rglob("*") if p.is_file()):
            name = p.name.lower().removesuffix(".gz")
            (files if name.endswith(TEXT_SUFFIXES + JSONL_SUFFIXES) else skipped).append(p)
        if not files:
            raise ValueError(f"{path}: folder holds no .txt, .text, .md, .jsonl or .json files"
                             + (f" (skipped {len(skipped)} other files)" if skipped else ""))
        if skipped and str(path) not in _told:
            _told.add(str(path))
            shown = ", ".join(str(p.relative_to(path)) for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
            print(f"genforge: {path}: skipped {len(skipped)} file(s) that are not .txt/.text/.md/.jsonl/.json: "
                  f"{shown}", file=sys.stderr)
        return files
    return [path]


def _kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return "jsonl" if name.endswith((".jsonl", ".json")) else "txt"


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _decode(raw: bytes, offset: int, path: Path, errors: str) -> str:
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: invalid UTF-8 at byte offset {offset + e.start} "
                         f"(byte 0x{raw[e.start]:02x}); fix the file or pass --data.errors=replace") from None


def _txt_chunks(path: Path, errors: str) -> Iterator[str]:
    """Chunks of about CHUNK_BYTES, cut after a newline (or a UTF-8 boundary in huge lines)."""
    offset, carry = 0, b""
    with _open(path) as f:
        while True:
            block = f.read(CHUNK_BYTES)
            buf = carry + block
            if not block:
                if buf:
                    yield _decode(buf, offset, path, errors)
                return
            cut = buf.rfind(b"\n") + 1
            if cut == 0:  # no newline: cut before a UTF-8 continuation run
                cut = len(buf)
                while cut > 0 and len(buf) - cut < 4 and (buf[cut - 1] & 0xC0) == 0x80:
                    cut -= 1
                cut = cut - 1 if cut > 0 and buf[cut - 1] >= 0xC0 else cut
            yield _decode(buf[:cut], offset, path, errors)
            offset += cut
            carry = buf[cut:]


def _lines(path: Path, errors: str) -> Iterator[str]:
    offset = 0
    with _open(path) as f:
        for raw in f:
            yield _decode(raw, offset, path, errors)
            offset += len(raw)


def _jsonl_rows(path: Path, field: str, errors: str) -> Iterator[tuple[str, dict, str]]:
    """(where, row, text) per row of a JSONL file."""
    for where, obj in json_lines(_lines(path, errors), path):
        if not isinstance(obj, dict) or field not in obj:
            raise ValueError(f"{where}: no field '{field}' (set --data.text_field)")
        if not isinstance(obj[field], str):
            raise ValueError(f"{where}: field '{field}' is not a string")
        yield where, obj, obj[field]


def _jsonl_docs(path: Path, field: str, errors: str) -> Iterator[str]:
    return (text for _, _, text in _jsonl_rows(path, field, errors))


def iter_labelled(path: str | os.PathLike, text_field: str, label_field: str,
                  errors: str = "strict") -> Iterator[tuple[str, str]]:
    """(text, label) per row of a JSONL corpus; a row without the label field is an error naming it."""
    for file in corpus_files(path):
        if _kind(file) != "jsonl":
            raise ValueError(f"{file}: --data.label_field={label_field} needs JSONL rows; a text file has no labels")
        for where, obj, text in _jsonl_rows(file, text_field, errors):
            if label_field not in obj:
                raise ValueError(f"{where}: no field '{label_field}' (fields: {', '.join(obj)}); "
                                 "set --data.label_field")
            yield text, _label(obj[label_field], where, label_field)


def corpus_labels(path: str | os.PathLike, text_field: str, label_field: str, errors: str = "strict") -> list[str]:
    """The corpus's labels, sorted (numerically when all are integers)."""
    found = {label for _, label in iter_labelled(path, text_field, label_field, errors)}
    return label_vocabulary(list(found), str(path)) if len(found) > 1 else sorted(found)


def iter_corpus(path: str | os.PathLike, text_field: str = "text", errors: str = "strict",
                boundaries: bool = False) -> Iterator[str | None]:
    """Text chunks of a corpus in order; with `boundaries`, None between documents (files, rows)."""
    first = True
    for file in corpus_files(path):
        docs = _jsonl_docs(file, text_field, errors) if _kind(file) == "jsonl" else [None]
        for doc in docs:
            if not first and boundaries:
                yield None
            first = False
            if doc is None:
                yield from _txt_chunks(file, errors)
            else:
                yield doc


def fingerprint(path: str | os.PathLike, extra: str) -> str:
    """sha256 over the corpus bytes, its file names and `extra` (tokenizer + settings)."""
    h = hashlib.sha256(extra.encode())
    for file in corpus_files(path):
        h.update(str(file.name).encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(CHUNK_BYTES), b""):
                h.update(block)
    return h.hexdigest()[:32]


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete the partial token files (`<key>.<pid>.tmp`) of encoders that were killed: their process is gone.
    Files of encoders still running, and anything else in the folder, are left alone."""
    removed = []
    for tmp in folder.glob("*.*.tmp"):
        key, _, pid = tmp.name.removesuffix(".tmp").partition(".")
        if len(key) != 32 or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # maybe another thread of this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process: not ours to judge
    return True


def _pieces(path, tokenizer: Tokenizer, text_field: str, errors: str,
            label_field: str | None) -> Iterator[tuple[list[int], str]]:
    """(token ids, text) in corpus order: chunks with end-of-text between documents, or, with a label
    field, [label][text][end] per row."""
    if label_field:
        assert isinstance(tokenizer, LabelledTokenizer), "a label field needs a LabelledTokenizer"
        for text, label in iter_labelled(path, text_field, label_field, errors):
            if label not in tokenizer.label_ids:
                raise ValueError(f"{path}: label {label!r} is not one of this model's labels "
                                 f"({', '.join(map(repr, tokenizer.labels))})")
            yield [tokenizer.label_ids[label], *tokenizer.base.encode(text, str(path)), tokenizer.eot_id], text
        return
    for chunk in iter_corpus(path, text_field, errors, boundaries=tokenizer.eot_id is not None):
        yield ([tokenizer.eot_id], "") if chunk is None else (tokenizer.encode(chunk, where=str(path)), chunk)


def encode_corpus(path: str | os.PathLike, tokenizer: Tokenizer, text_field: str = "text",
                  errors: str = "strict", progress: bool = True, label_field: str | None = None) -> np.memmap:
    """Encode a corpus to a cached token file and return it memory-mapped (read-only)."""
    from tqdm import tqdm
    tok_json = json.dumps(tokenizer.to_dict(), sort_keys=True)
    labelled = f"|label:{label_field}" if label_field else ""
    key = fingerprint(path, f"{tok_json}|{text_field}|{errors}{labelled}|v1")
    out = cache_dir() / "tokens" / f"{key}.bin"
    dtype = np.uint16 if tokenizer.vocab_size <= 65536 else np.uint32
    if out.exists():
        return np.memmap(out, dtype=dtype, mode="r")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out.parent)
    total = sum(f.stat().st_size for f in corpus_files(path))
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    n = 0
    try:
        with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc="encoding corpus",
                                          disable=not progress or not sys.stderr.isatty(), leave=False) as bar:
            for ids, text in _pieces(path, tokenizer, text_field, errors, label_field):
                arr = np.asarray(ids, dtype=dtype)
                f.write(arr.tobytes())
                n += len(arr)
                bar.update(len(text.encode("utf-8", errors="replace")))
        if n == 0:
            raise ValueError(f"{path}: the corpus is empty")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return np.memmap(out, dtype=dtype, mode="r")


def check_corpus(path: str | os.PathLike, text_field: str = "text", errors: str = "strict") -> None:
    """Fail early, naming the file, on an empty or whitespace-only corpus."""
    for chunk in iter_corpus(path, text_field, errors):
        if chunk.strip():
            return
    raise ValueError(f"{path}: the corpus is empty or holds only whitespace")


@dataclass
class TokenSplit:
    """A contiguous range of a token file, sampled as random windows or read as whole windows."""
    tokens: np.ndarray
    block_size: int
    name: str

    def __post_init__(self):
        if len(self.tokens) < self.block_size + 1:
            raise ValueError(f"the {self.name} split has {len(self.tokens)} tokens, fewer than the "
                             f"context length + 1 ({self.block_size + 1}); use more data, a smaller "
                             "--model.block_size, or a different --data.val_fraction")

    def batch(self, batch_size: int, gen: torch.Generator, shares: Shares | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: x (B, T) and y = x shifted by one (B, T); with `shares`, in the drawing slot's blocks."""
        ix = (shares or Shares(0)).window_starts(len(self.tokens), self.block_size, batch_size, gen)
        rows = [np.asarray(self.tokens[i:i + self.block_size + 1], dtype=np.int64) for i in ix.tolist()]
        xy = torch.from_numpy(np.stack(rows))
        return xy[:, :-1], xy[:, 1:]

    def windows(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Non-overlapping windows covering the split once (every token predicted once)."""
        T = self.block_size
        starts = list(range(0, len(self.tokens) - 1, T))
        for b in range(0, len(starts), batch_size):
            rows = [np.asarray(self.tokens[s:s + T + 1], dtype=np.int64) for s in starts[b:b + batch_size]]
            width = max(len(r) for r in rows)
            xy = torch.full((len(rows), width), -1, dtype=torch.long)
            for i, r in enumerate(rows):
                xy[i, :len(r)] = torch.from_numpy(r)
            x, y = xy[:, :-1].clone(), xy[:, 1:]
            x[x < 0] = 0  # padding inputs; their targets are -1 and ignored
            yield x, y


def split_tokens(tokens: np.ndarray, val_fraction: float, block_size: int) -> tuple[TokenSplit, TokenSplit | None]:
    """First (1 - val_fraction) for training, the last val_fraction for validation."""
    n_val = int(len(tokens) * val_fraction)
    train = TokenSplit(tokens[:len(tokens) - n_val], block_size, "train")
    val = TokenSplit(tokens[len(tokens) - n_val:], block_size, "validation") if n_val else None
    return train, val
