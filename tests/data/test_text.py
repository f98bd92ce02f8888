import gzip
import json

import numpy as np
import pytest
import torch

from genforge.data.text import check_corpus, encode_corpus, iter_corpus, split_tokens
from genforge.data.tokenizers import CharTokenizer


def test_txt_folder_and_jsonl(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("alpha\n")
    (tmp_path / "d" / "b.txt").write_text("beta\n")
    assert "".join(c for c in iter_corpus(tmp_path / "d") if c) == "alpha\nbeta\n"
    rows = [{"text": "one"}, {"text": "two"}]
    (tmp_path / "x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert list(iter_corpus(tmp_path / "x.jsonl", boundaries=True)) == ["one", None, "two"]
    with gzip.open(tmp_path / "y.jsonl.gz", "wt") as f:
        f.write(json.dumps({"body": "zipped"}) + "\n")
    assert list(iter_corpus(tmp_path / "y.jsonl.gz", text_field="body")) == ["zipped"]


def test_jsonl_missing_field_names_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"text": "ok"}\n{"body": "no"}\n')
    with pytest.raises(ValueError, match=r"x.jsonl:2: no field 'text'"):
        list(iter_corpus(p))


def test_invalid_utf8_reports_byte_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"hello\nwor\xffld\n")
    with pytest.raises(ValueError, match=r"bad.txt: invalid UTF-8 at byte offset 9"):
        list(iter_corpus(p))
    assert "".join(iter_corpus(p, errors="replace")) == "hello\nwor\ufffdld\n"


def test_large_file_is_streamed_in_chunks(tmp_path, monkeypatch):
    import genforge.data.text as text
    monkeypatch.setattr(text, "CHUNK_BYTES", 64)
    body = "line with ünïcode 你好\n" * 50
    p = tmp_path / "big.txt"
    p.write_text(body)
    chunks = list(iter_corpus(p))
    assert len(chunks) > 5
    assert "".join(chunks) == body
    # a file without newlines is cut at UTF-8 boundaries
    p.write_text("你好" * 100)
    assert "".join(iter_corpus(p)) == "你好" * 100


@pytest.mark.parametrize("content", ["", "   \n\t\n"])
def test_empty_corpus(tmp_path, content):
    p = tmp_path / "empty.txt"
    p.write_text(content)
    with pytest.raises(ValueError, match="empty.txt.*empty"):
        check_corpus(p)


def test_encode_is_cached_and_memory_mapped(corpus):
    tok = CharTokenizer.train(iter_corpus(corpus))
    a = encode_corpus(corpus, tok, progress=False)
    b = encode_corpus(corpus, tok, progress=False)
    assert isinstance(a, np.memmap) and a.filename == b.filename
    assert tok.decode(a.tolist()) == corpus.read_text()


def test_split_and_batches(corpus):
    tok = CharTokenizer.train(iter_corpus(corpus))
    tokens = encode_corpus(corpus, tok, progress=False)
    train, val = split_tokens(tokens, 0.1, 16)
    assert len(train.tokens) + len(val.tokens) == len(tokens)
    assert len(val.tokens) == int(len(tokens) * 0.1)
    x, y = train.batch(4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    seen = 0
    for x, y in val.windows(8):
        seen += int((y >= 0).sum())
    assert seen == len(val.tokens) - 1  # every validation token but the first is predicted once


def test_corpus_shorter_than_context(corpus):
    tok = CharTokenizer.train(iter_corpus(corpus))
    tokens = encode_corpus(corpus, tok, progress=False)
    with pytest.raises(ValueError, match="context length"):
        split_tokens(tokens[:50], 0.0, 64)
