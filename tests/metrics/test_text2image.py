"""Text-to-image evaluation on fake pipelines: one that draws what it is asked scores ~100%, noise ~chance."""
import numpy as np
import pytest

from genforge.data import images, shapes, templates
from genforge.data.captions import caption_words
from genforge.metrics import judges, text2image


class FakePipe:
    """A TextToImagePipeline whose `draw(prompt, rng)` makes each image."""
    family, text_len = "fake-t2i", 16

    def __init__(self, data, size, channels, draw, feature_steps=0):
        self.meta = {"config": {"data": {"path": data, "feature_steps": feature_steps}}}  # 0: automatic
        self.image_size, self.channels, self.draw = size, channels, draw

    def generate(self, prompt, n=1, seed=None, guidance=None, temperature=None, top_k=None):
        prompts = [prompt] * n if isinstance(prompt, str) else prompt
        rng = np.random.default_rng(seed)
        return np.stack([self.draw(p, rng) for p in prompts])


def noise(size, channels):
    return lambda prompt, rng: rng.integers(0, 256, (size, size, channels), dtype=np.uint8)


JUDGE_STEPS = 200


@pytest.fixture
def small_shapes(monkeypatch, one_thread):
    monkeypatch.setattr(shapes, "SPLIT_SIZES", {"train": 3000, "test": 300, "held_out_combos": 200})


def test_shapes_judge_and_evaluation_of_a_faithful_pipeline_and_of_noise(small_shapes):
    judge = judges.judge_for("shapes", 32, 3, steps=JUDGE_STEPS)
    attrs = {"all", *judges.HEADS} - {"count"}
    assert set(judge.accuracy) == attrs | {f"held_out_combos.{k}" for k in attrs}
    assert min(judge.accuracy.values()) > 0.9, judge.accuracy  # real test images and held-out combinations
    held = images.load("shapes", 32, 3, "held_out_combos")
    again = judges.judge_for("shapes", 32, 3, steps=JUDGE_STEPS)  # from the cache
    assert again.accuracy == judge.accuracy and again.read(held.images[:20]) == judge.read(held.images[:20])

    drawn = FakePipe("shapes", 32, 3, lambda p, rng: shapes.render(shapes.attributes(p), rng), feature_steps=10)
    good = text2image.evaluate_text2image(drawn, n=120, kid_subsets=5, judge_steps=JUDGE_STEPS)
    assert set(good["caption_accuracy"]) == {"train", "held_out", "held_out_combos"}
    for split, acc in good["caption_accuracy"].items():
        assert acc["all"] >= 0.9 and min(acc.values()) >= 0.9, (split, acc)
    assert good["judge_accuracy"] == judge.accuracy and good["judge_fit"] == (min(judge.accuracy.values()) >= 0.98)
    noisy = FakePipe("shapes", 32, 3, noise(32, 3), feature_steps=10)
    bad = text2image.evaluate_text2image(noisy, n=120, kid_subsets=5, judge_steps=JUDGE_STEPS)
    for split, acc in bad["caption_accuracy"].items():
        assert acc["all"] <= 0.05 and acc["colour"] <= 0.5 and acc["shape"] <= 0.6, (split, acc)
    q, b = good["quality"], bad["quality"]
    assert q["feature_fd"] < 3 * q["feature_fd_floor"] + 1 and b["feature_fd"] > 10 * q["feature_fd"]
    assert good["memorisation"]["copies"] < 0.1 and 0.5 < good["memorisation"]["ratio"] < 2
    assert bad["memorisation"]["ratio"] > 2


def test_labelled_evaluation_with_the_feature_network_as_judge(one_thread):
    train = images.load("digits", 8, 1, "train")
    pool = {k: train.images[train.labels == k] for k in range(10)}

    def draw(prompt, rng):  # a real training digit of the class the prompt names (numeral or word)
        words = caption_words(prompt)
        k = next(int(w) if w.isdecimal() else templates.NUMBER_WORDS.index(w) for w in words
                 if w.isdecimal() or w in templates.NUMBER_WORDS)
        return pool[k][rng.integers(len(pool[k]))]

    good = text2image.evaluate_text2image(FakePipe("digits", 8, 1, draw), n=100, kid_subsets=5)
    assert set(good["caption_accuracy"]) == {"train", "held_out"}
    floor = good["judge_accuracy"]["class"]
    assert good["judge_fit"] == (floor >= 0.98)
    assert floor > 0.8 and all(a["class"] >= floor - 0.1 for a in good["caption_accuracy"].values())
    assert good["memorisation"]["copies"] > 0.9  # it copies training images, and the score says so
    assert set(good["per_class"]) == set(train.class_names)
    fd = {name: np.mean([v[name] for v in good["per_class"].values()]) for name in ("feature_fd", "feature_fd_floor")}
    assert fd["feature_fd"] < 3 * fd["feature_fd_floor"]  # 10 images a class: noisy, but near its floor
    bad = text2image.evaluate_text2image(FakePipe("digits", 8, 1, noise(8, 1)), n=100, kid_subsets=5)
    assert all(a["class"] < 0.3 for a in bad["caption_accuracy"].values())
    assert np.mean([v["feature_fd"] for v in bad["per_class"].values()]) > 5 * fd["feature_fd"]


def test_bad_inputs(tmp_path, one_thread):
    with pytest.raises(ValueError, match="lacks generate"):
        text2image.evaluate_text2image(object())
    pipe = FakePipe("digits", 8, 1, noise(8, 1), feature_steps=5)
    pipe.generate = lambda prompt, n=1, seed=None, **kw: np.zeros((n, 4, 4, 1), np.uint8)
    with pytest.raises(ValueError, match=r"generate\(\) must return uint8 \(10, 8, 8, 1\)"):
        text2image.evaluate_text2image(pipe, n=10, kid_subsets=2)
    with pytest.raises(ValueError, match="no labels"):
        np.savez(tmp_path / "unlabelled.npz", images=np.zeros((40, 8, 8), np.uint8))
        judges.judge_for(str(tmp_path / "unlabelled.npz"), 8, 1)



def test_guidance_sweep_reads_only_the_training_split_and_scores_every_setting(monkeypatch, one_thread):
    train = images.load("digits", 8, 1, "train")
    names, asked, real_load = train.class_names, [], images.load

    def train_only(path, size, channels, split="train", *a, **kw):
        if split != "train":
            raise AssertionError(f"the guidance sweep read the {split} split")
        return real_load(path, size, channels, split, *a, **kw)

    class PixelReader:  # a judge that reads the class from the first pixel
        id, accuracy = "pixel-reader", {"class": 1.0}

        def read(self, ims):
            return [{"class": names[int(im[0, 0, 0]) % 10]} for im in ims]
    monkeypatch.setattr(images, "load", train_only)
    monkeypatch.setattr(judges, "judge_for", lambda *a, **kw: PixelReader())

    class Guided(FakePipe):  # draws the class a prompt names at the settings in `right`, the next class otherwise
        right, vqvae = {(2.0, 4)}, type("VQ", (), {"grid": (2, 4)})

        def generate(self, prompt, n=1, seed=None, guidance=None, guidance_from=0, return_warnings=False, **kw):
            asked.extend(prompt)
            rng, ims = np.random.default_rng(seed), np.zeros((n, 8, 8, 1), np.uint8)
            ims[:, 1:] = train.images[rng.choice(len(train), n)][:, 1:]  # real digits below the pixel row
            for i, p in enumerate(prompt):
                w = next(w for w in caption_words(p) if w.isdecimal() or w in templates.NUMBER_WORDS)
                k = int(w) if w.isdecimal() else templates.NUMBER_WORDS.index(w)
                ims[i, 0, 0, 0] = k if (guidance, guidance_from) in self.right else k + 1
            return ims, []

    sweep = text2image.guidance_sweep(Guided("digits", 8, 1, None, feature_steps=30), n=50)
    got = {(r["scale"], r["guidance_from"]): r["accuracy"] for r in sweep["settings"]}
    assert set(got) == {(1.0, 0)} | {(g, f) for g in text2image.SCALES[1:] for f in (0, 4)}  # scale 1 guides nothing
    assert got[(2.0, 4)] == 1.0 and sum(got.values()) == 1.0 and (sweep["scale"], sweep["guidance_from"]) == (2.0, 4)
    assert all(r["fd"] >= 0 for r in sweep["settings"]) and sweep["fd_floor"] >= 0 and sweep["method"] == "sweep"
    assert sweep["n"] == 50 and sweep["judge"] == "pixel-reader" and len(asked) == 9 * 50
    assert set(asked) <= {p for ps in templates.prompts(names, "train") for p in ps}  # never a held-out phrasing


def test_the_rule_takes_the_lowest_fd_within_a_point_of_the_best_accuracy():
    table = [(1.0, 0, 0.900, 10.0), (1.5, 0, 0.975, 11.0), (2.0, 0, 0.992, 19.0), (2.0, 7, 0.985, 14.0),
             (2.5, 7, 0.990, 16.0), (3.0, 0, 0.995, 30.0)]
    settings = [{"scale": g, "guidance_from": f, "accuracy": a, "fd": fd} for g, f, a, fd in table]
    assert (text2image.choose(settings)["scale"], text2image.choose(settings)["guidance_from"]) == (2.0, 7)
    assert text2image.choose(settings, margin=0.0)["scale"] == 3.0  # accuracy alone: the strongest guidance
    assert text2image.choose(settings, margin=0.1)["scale"] == 1.0  # a wide margin: the most realistic
    tie = [{"scale": 2.0, "guidance_from": 7, "accuracy": 0.99, "fd": 5.0}, {**settings[0], "accuracy": 0.99, "fd": 5.0}]
    assert text2image.choose(tie)["scale"] == 1.0  # of a tie, the smaller scale


def test_reconstruction_accuracy_reads_a_tokenizers_reconstructions_of_real_renders(small_shapes):
    """The ceiling of a prior through a tokenizer: a lossless one scores the judge's 100%, one that blanks the
    held-out combinations scores 0 there and still 100% on the test split."""
    truth = {}
    for split in ("test", "held_out_combos"):
        s = images.load("shapes", 32, 3, split)
        truth.update({img.tobytes(): shapes.attributes(c) for img, c in zip(s.images, s.captions)})

    class LookupJudge:  # reads a real render exactly, anything else as nothing
        def read(self, imgs):
            return [truth.get(img.tobytes(), {}) for img in imgs]

    exact = text2image.reconstruction_accuracy(lambda x: x, LookupJudge(), 32, 3, n=50)
    assert set(exact) == {"test", "held_out_combos"} and all(acc["all"] == 1.0 for acc in exact.values())
    combos = {img.tobytes() for img in images.load("shapes", 32, 3, "held_out_combos").images}

    def blank(x):  # a tokenizer that cannot draw the held-out combinations
        return np.stack([np.zeros_like(i) if i.tobytes() in combos else i for i in x])

    lossy = text2image.reconstruction_accuracy(blank, LookupJudge(), 32, 3, n=50)
    assert lossy["test"]["all"] == 1.0 and lossy["held_out_combos"]["all"] == 0.0
