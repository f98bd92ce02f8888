"""Classifier featurizers: HTML clean-up, word vocabularies with Keras-style padding, hashed n-grams."""
import numpy as np
import torch

from genforge.data.words import Featurizer, clean_text, hashed_ngrams, words


def test_markup_is_removed_and_entities_unescaped():
    assert clean_text("Great film.<br /><br />Loved it &amp; more") == "great film.  loved it & more"
    assert words("Don't <i>miss</i> it!") == ["don't", "miss", "it"]
    assert words("Don't miss it!", punctuation=True) == ["don't", "miss", "it", "!"]


def test_word_vocabulary_keeps_the_top_k_and_pads_like_keras(capsys):
    f = Featurizer("word", max_len=4, vocab_size=4).fit(["a a a b b c", "a b"])
    assert f.vocab == ["<pad>", "<oov>", "a", "b"]
    x = f.transform(["c a", "a b a b c a"])
    assert x.ids.tolist() == [[0, 0, 1, 2], [2, 3, 1, 2]]  # pre-padding; truncation keeps the end
    assert x.lengths.tolist() == [2, 4]
    f.transform(["a b a b c a b"])
    err = capsys.readouterr().err
    assert err.count("truncated") == 1  # said once, however often it happens
    post = Featurizer("word", max_len=4, vocab_size=4, pad="post").fit(["a b"]).transform(["a b a b a"])
    assert post.ids.tolist() == [[2, 3, 2, 3]]


def test_very_long_texts_are_cut_once_with_a_notice(capsys):
    f = Featurizer("ngram", ngram=1, buckets=64, max_chars=10)
    x = f.transform(["short", "x" * 5 + " " + "y" * 50])
    assert len(x) == 2
    assert "max_chars=10" in capsys.readouterr().err


def test_hashed_ngrams_are_binary_deterministic_and_stay_inside_each_text():
    texts = [["good", "movie", "good", "movie"], ["bad", "movie"], ["x"]]
    bag = hashed_ngrams(texts, n=2, buckets=1 << 20)
    sizes = torch.diff(bag.offsets).tolist()
    assert sizes == [4, 3, 1]  # {good, movie, good movie, movie good}, {bad, movie, bad movie}, {x}
    again = hashed_ngrams(texts, n=2, buckets=1 << 20)
    assert torch.equal(bag.ids, again.ids)
    for i, t in enumerate(texts):  # a text's features do not depend on its neighbours
        alone = hashed_ngrams([t], n=2, buckets=1 << 20)
        assert bag.ids[bag.offsets[i]:bag.offsets[i + 1]].tolist() == alone.ids.tolist()
    assert int(bag.ids.max()) < 1 << 20 and int(bag.ids.min()) >= 0


def test_bag_batches_and_class_counts():
    bag = hashed_ngrams([["a"], ["a", "b"], ["b"]], n=1, buckets=16)
    ids, offsets = bag.batch(torch.tensor([2, 0]))
    assert offsets.tolist() == [0, 1] and ids.numel() == 2
    counts = bag.counts(np.array([0, 1, 1]), 2, 16)
    a, b = bag.ids[0].item(), bag.ids[-1].item()
    assert counts[0, a] == 1 and counts[1, a] == 1 and counts[1, b] == 2 and counts.sum() == 4


def test_bag_batch_is_the_rows_slices_in_order():
    bag = hashed_ngrams([["a", "b", "c"], ["d"], ["a", "e"], ["f", "g", "h", "i"]], n=2, buckets=1 << 12)
    idx = torch.tensor([3, 0, 3, 1])  # out of order, one row twice
    ids, offsets = bag.batch(idx)
    rows = [bag.ids[bag.offsets[i]:bag.offsets[i + 1]] for i in idx.tolist()]
    assert torch.equal(ids, torch.cat(rows))
    assert offsets.tolist() == [0, 7, 12, 19]  # 7, 5, 7 and 1 ids
    empty_ids, empty_offsets = bag.batch(torch.tensor([], dtype=torch.int64))
    assert empty_ids.numel() == 0 and empty_offsets.numel() == 0


def test_featurizer_round_trips_through_its_dict():
    f = Featurizer("word", max_len=6, vocab_size=5).fit(["the cat sat", "the dog"])
    g = Featurizer.from_dict(f.to_dict())
    assert torch.equal(f.transform(["the cat ran"]).ids, g.transform(["the cat ran"]).ids)
    c = Featurizer("char", max_len=8).fit(["abc"])
    assert c.transform(["abz"]).lengths.tolist() == [2]  # unseen characters are dropped
    assert Featurizer.from_dict(c.to_dict()).num_ids == 3
