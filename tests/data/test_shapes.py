"""The shapes set: seeded rendering, captions that parse back, held-out combinations kept out of training."""
import numpy as np
import pytest

from genforge.data import images, shapes
from genforge.data.captions import caption_words

ONE = {"colour": "red", "shape": "square", "size": "large", "position": "centre"}
TWO = {"colour": "blue", "shape": "square", "relation": "above", "colour2": "green", "shape2": "triangle"}


@pytest.fixture
def small_splits(monkeypatch):
    monkeypatch.setattr(shapes, "SPLIT_SIZES", {"train": 400, "test": 60, "held_out_combos": 40})


def test_renderer_is_deterministic_per_seed():
    a, b, c = shapes.render_set(40, 3), shapes.render_set(40, 3), shapes.render_set(40, 4)
    assert a.images.shape == (40, 32, 32, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and a.captions == b.captions and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, c.images)


def test_render_draws_the_attributes():
    rng = np.random.default_rng(0)
    img = shapes.render(ONE, rng).astype(int)
    assert img[16, 16, 0] > 180 and img[16, 16, 1:].max() < 100  # a large red square fills the centre
    small = shapes.render({**ONE, "size": "small", "position": "top left", "colour": "yellow"}, rng).astype(int)
    yellow = small[..., :2].min(axis=2) > 150  # red and green high
    assert yellow[:16, :16].any() and not yellow[16:].any() and not yellow[:, 16:].any()  # only at top left
    two = shapes.render(TWO, rng).astype(int)
    blue, green = two[..., 2] - two[..., 1] > 80, two[..., 1] - two[..., 2] > 80
    assert np.nonzero(blue)[0].mean() < 16 < np.nonzero(green)[0].mean()  # blue above green


def test_every_caption_form_parses_back_to_its_attributes():
    rng = np.random.default_rng(1)
    for _ in range(60):
        attrs = shapes.sample_attributes(rng, held_out_combo=bool(rng.integers(2)))
        forms = shapes.TWO_FORMS if "relation" in attrs else shapes.ONE_FORMS
        for split in ("train", "held_out"):
            for form in forms[split]:
                assert shapes.attributes(shapes.phrase(form, attrs)) == attrs, form
    assert shapes.attributes("a small red circle at the top left") == {
        "colour": "red", "shape": "circle", "size": "small", "position": "top left"}
    assert shapes.attributes("a green triangle below a blue square") == TWO
    assert shapes.attributes("a blue square above a green triangle") == TWO
    for bad in ("a red thing", "a small red circle", "a red circle and a blue square"):
        with pytest.raises(ValueError, match="caption"):
            shapes.attributes(bad)


def test_train_and_held_out_phrasings_are_disjoint():
    for forms in (shapes.ONE_FORMS, shapes.TWO_FORMS):
        train = {" ".join(caption_words(shapes.phrase(f, ONE if forms is shapes.ONE_FORMS else TWO)))
                 for f in forms["train"]}
        held = {" ".join(caption_words(shapes.phrase(f, ONE if forms is shapes.ONE_FORMS else TWO)))
                for f in forms["held_out"]}
        assert train and held and not train & held


def _combos(attrs):
    second = {(attrs["colour2"], attrs["shape2"])} if "relation" in attrs else set()
    return {(attrs["colour"], attrs["shape"])} | second


def test_held_out_combos_only_in_their_split(small_splits):
    train, test = images.load("shapes", 32, 3, "train"), images.load("shapes", 32, 3, "test")
    held = images.load("shapes", 32, 3, "held_out_combos")
    assert (len(train), len(test), len(held)) == (400, 60, 40)
    for data, inside in ((train, False), (test, False), (held, True)):
        for c, y in zip(data.captions, data.labels):
            attrs = shapes.attributes(c)
            assert bool(_combos(attrs) & set(shapes.HELD_OUT_COMBOS)) == inside, c
            assert data.class_names[y] == f"{attrs['colour']} {attrs['shape']}"
    assert any("relation" in shapes.attributes(c) for c in train.captions)
    assert not np.array_equal(train.images[:60], test.images)


def test_load_caches_and_converts(small_splits, tmp_path, monkeypatch):
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path))
    first = images.load("shapes", 32, 3, "test")
    assert list((tmp_path / "shapes").glob("*.npz"))
    again = images.load("shapes", 32, 3, "test")
    assert np.array_equal(first.images, again.images) and first.captions == again.captions
    grey = images.load("shapes", 28, 1, "test")
    assert grey.images.shape == (60, 28, 28, 1) and grey.captions == first.captions
    with pytest.raises(ValueError, match="shapes: split must be one of train, test, held_out_combos"):
        images.load("shapes", 32, 3, "validation")
