import pytest

from genforge.data.tokenizers import (BPETokenizer, CharTokenizer, StreamDecoder, tokenizer_from_dict,
                                      train_tokenizer)

MIXED = "Hello, world! Ünïcödé — 你好，世界。 🙂\nsecond line"


def test_char_round_trip_non_ascii():
    tok = CharTokenizer.train([MIXED])
    ids = tok.encode(MIXED)
    assert tok.decode(ids) == MIXED
    assert tok.vocab_size == len(set(MIXED))
    again = tokenizer_from_dict(tok.to_dict())
    assert again.encode(MIXED) == ids


def test_char_unknown_character_is_named():
    tok = CharTokenizer.train(["abc"])
    with pytest.raises(ValueError, match=r"'z'.*position 2"):
        tok.encode("abz", where="prompt")


def test_bpe_round_trip_and_serialisation():
    tok = train_tokenizer("bpe", lambda: iter([MIXED * 20]), vocab_size=300)
    assert isinstance(tok, BPETokenizer)
    assert tok.vocab_size <= 300
    ids = tok.encode(MIXED)
    assert tok.decode(ids) == MIXED
    # byte-level: text never seen in training still round-trips
    unseen = "Ωμέγα ελληνικά ✓"
    assert tok.decode(tok.encode(unseen)) == unseen
    again = tokenizer_from_dict(tok.to_dict())
    assert again.encode(MIXED) == ids
    assert again.eot_id == tok.eot_id is not None


def test_bpe_vocab_too_small():
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train(iter(["abc"]), vocab_size=100)


def test_stream_decoder_holds_back_partial_characters():
    tok = train_tokenizer("bpe", lambda: iter(["plain ascii text " * 10]), vocab_size=260)
    text = "a你好b"
    ids = tok.encode(text)
    dec = StreamDecoder(tok)
    pieces = [dec.push([i]) for i in ids]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        tokenizer_from_dict({"kind": "wordpiece"})
