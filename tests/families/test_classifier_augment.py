"""Word dropout (genforge/data/augment.py): what it keeps, that it is seeded, and that training uses it."""
import json

import pytest
import torch

from genforge.data import augment
from genforge.families import classifier as C
from genforge.families.classifier import FitConfig

from .test_classifier import overrides


def test_drop_bag_keeps_a_subset_of_each_text_in_order():
    ids = torch.arange(100, 130)  # three texts of 10, 15 and 5 ids
    offsets = torch.tensor([0, 10, 25])
    kept, new_off = augment.drop_bag(ids, offsets, 0.5, torch.Generator().manual_seed(0))
    sizes = torch.diff(new_off, append=new_off.new_tensor([kept.numel()]))
    assert sizes.min() >= 1 and kept.numel() < 30  # something dropped, every text keeps one
    bounds = [(100, 110), (110, 125), (125, 130)]
    for b, (lo, hi) in enumerate(bounds):  # each text's kept ids are its own, in order, its first id kept
        mine = kept[new_off[b]:new_off[b] + sizes[b]]
        assert mine[0] == lo and bool(((mine >= lo) & (mine < hi)).all()) and bool((mine.diff() > 0).all())
    again = augment.drop_bag(ids, offsets, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], kept) and torch.equal(again[1], new_off)
    none = augment.drop_bag(ids, offsets, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(none[0], ids) and torch.equal(none[1], offsets)


@pytest.mark.parametrize("pad", ["pre", "post"])
def test_drop_tokens_closes_up_the_kept_tokens_and_keeps_the_padding_side(pad):
    lengths = torch.tensor([6, 3, 1])
    T = 8
    ids = torch.zeros(3, T, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        toks = torch.arange(1, n + 1) + 10 * b
        if pad == "pre":
            ids[b, T - n:] = toks
        else:
            ids[b, :n] = toks
    out, new_len = augment.drop_tokens(ids, lengths, pad, 0.5, torch.Generator().manual_seed(3))
    assert bool((new_len >= 1).all()) and bool((new_len <= lengths).all()) and new_len.sum() < lengths.sum()
    for b in range(3):
        n = int(new_len[b])
        real, padding = (out[b, T - n:], out[b, :T - n]) if pad == "pre" else (out[b, :n], out[b, n:])
        assert bool((padding == 0).all()) and bool((real > 0).all())
        assert real[0] == 1 + 10 * b and bool((real.diff() > 0).all())  # first token kept, order kept
        assert set(real.tolist()) <= set(range(1 + 10 * b, int(lengths[b]) + 1 + 10 * b))


def test_training_with_word_dropout_is_seeded_and_differs_from_without(reviews, tmp_path):
    def losses(name, p):
        run, _ = C.train("bag", overrides(reviews, data={"buckets": 4096}, fit={"epochs": 2, "word_dropout": p}),
                         out=str(tmp_path / name), progress=False)
        rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
        return [r["eval/train_loss"] for r in rows if "eval/train_loss" in r]
    a, b, plain = losses("a", 0.3), losses("b", 0.3), losses("plain", 0.0)
    assert len(a) == 2 and a == b and a != plain
    with pytest.raises(ValueError, match="fit.word_dropout"):
        FitConfig(word_dropout=1.0).validate()
