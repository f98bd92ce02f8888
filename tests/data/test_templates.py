"""Caption templates: disjoint splits, digit and thing phrasings, captions for labelled sets."""
import numpy as np
import pytest

from genforge.data import templates
from genforge.data.captions import caption_words
from genforge.data.images import ImageSet


def test_train_and_held_out_templates_are_disjoint():
    for digits in (True, False):
        train, held = templates.templates("train", digits), templates.templates("held_out", digits)
        assert train and held and not set(train) & set(held)
        filled = {" ".join(caption_words(p)) for ps in templates.prompts(["3", "8"] if digits else ["cat"], "train")
                  for p in ps}
        assert not filled & {" ".join(caption_words(p)) for ps in templates.prompts(
            ["3", "8"] if digits else ["cat"], "held_out") for p in ps}


def test_digit_and_thing_phrasings():
    rng = np.random.default_rng(0)
    seen = {templates.caption_for("7", rng) for _ in range(200)}
    assert {"a handwritten seven", "the digit 7", "a 7, written by hand"} <= seen
    assert "an eight" in templates.prompts(["8"], "train")[0] and "an 8, written by hand" in templates.prompts(["8"])[0]
    assert templates.prompts(["golden_retriever"], "train")[0][0] == "a photo of golden retriever"
    assert templates.prompts(["12", "3"], "held_out")[0][0] == "a photograph of 12"  # faces' '0'..'39': things
    with pytest.raises(ValueError, match="split"):
        templates.prompts(["1"], "test")


def test_captioned_labelled_set_is_seeded_and_follows_labels():
    data = ImageSet(np.zeros((50, 4, 4, 1), np.uint8), np.arange(50) % 10, [str(i) for i in range(10)], "toy")
    a, b = templates.captioned(data, seed=1), templates.captioned(data, seed=1)
    assert a.captions == b.captions and len(set(a.captions)) > 10
    for y, c in zip(data.labels, a.captions):
        assert str(y) in c.split() or templates.NUMBER_WORDS[y] in caption_words(c) or f"{y}," in c
    held = templates.captioned(data, seed=1, split="held_out")
    assert set(held.captions) <= {p for ps in templates.prompts(data.class_names, "held_out") for p in ps}
    own = ImageSet(data.images, None, [], "capt", ["x"] * 50)
    assert templates.captioned(own, 0) is own
    with pytest.raises(ValueError, match="unlabelled.npz: neither captions nor labels"):
        templates.captioned(ImageSet(data.images, None, [], "unlabelled.npz"), 0)
