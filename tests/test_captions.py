"""The caption vocabulary shared by the text-to-image families."""
import numpy as np
import pytest

from genforge.data.captions import PAD, UNK, CaptionVocab, caption_words


def test_words_are_lowercased_letter_and_digit_runs():
    assert caption_words("A 7, written by hand.") == ["a", "7", "written", "by", "hand"]


def test_build_encode_batch_and_round_trip():
    vocab = CaptionVocab.build(["a red circle", "a blue square", "a red square"])
    assert vocab.words[:3] == ["<pad>", "<unk>", "a"]
    ids, unknown = vocab.encode("A red hexagon", max_len=4)
    assert ids[-1] == UNK and unknown == ["hexagon"] and vocab.decode(ids[:2]) == "a red"
    batch = vocab.encode_batch(["a red circle", "square"], max_len=4)
    assert batch.dtype == np.int64 and batch.shape == (2, 4) and batch[1, 1:].tolist() == [PAD] * 3
    assert CaptionVocab.from_dict(vocab.to_dict()).words == vocab.words


def test_too_long_prompt_names_the_limit_and_bad_dict_is_refused():
    vocab = CaptionVocab.build(["a b c"])
    with pytest.raises(ValueError, match="prompt: 4 words, more than this model's caption context of 3"):
        vocab.encode("a b c a", max_len=3)
    with pytest.raises(ValueError, match="run/captions.json: not a caption vocabulary"):
        CaptionVocab.from_dict({"words": ["x"]}, "run/captions.json")
    with pytest.raises(ValueError, match="no words"):
        CaptionVocab.build(["", "!!"])
