"""TrainingImageScorer: evaluate-while-training scores and grids for any `generate(n, seed=, labels=)`."""
import numpy as np
import pytest
import torch
from PIL import Image

from genforge.data.images import ImageSet
from genforge.metrics import feature_net, stats
from genforge.metrics.monitor_images import TrainingImageScorer
from tests.conftest import make_digit_like

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    """(feature network, test set, a bank of real images per class) on 4-class bar images."""
    def as_set(n, seed):
        x, y = make_digit_like(n, size=16, seed=seed)
        return ImageSet(x[..., None], y.astype(np.int64), ["0", "1", "2", "3"], f"bars{seed}")
    train, test, bank = as_set(200, 0), as_set(80, 1), as_set(400, 2)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:  # trained once for the module, cached in its own folder
        mp.setenv("GENFORGE_CACHE", str(tmp_path_factory.mktemp("cache")))
        torch.set_num_threads(1)
        try:
            return feature_net.get(train, test, steps=40, verbose=False), test, bank
        finally:
            torch.set_num_threads(threads)


class Recorder:
    """A fake generator: real images of each requested class (or of class `collapse` only); records its calls."""

    def __init__(self, bank, collapse=None):
        self.bank, self.collapse, self.calls = bank, collapse, []

    def __call__(self, n, *, seed, labels):
        self.calls.append((n, seed, None if labels is None else labels.tolist()))
        want = np.full(n, self.collapse) if self.collapse is not None else (labels if labels is not None else np.arange(n))
        rng = np.random.default_rng(seed)
        pools = [np.flatnonzero(self.bank.labels == k) for k in range(4)]
        return self.bank.images[[rng.choice(pools[k % 4]) for k in want]]


class FakeMonitor:
    def __init__(self):
        self.images = []

    def image(self, tag, array, step):
        self.images.append((tag, array.shape, step))


def test_a_faithful_generator_scores_better_than_a_collapsed_one(bars):
    net, test, bank = bars
    good = TrainingImageScorer(Recorder(bank), net, test, num_classes=4, n=80, seed=7)
    bad = TrainingImageScorer(Recorder(bank, collapse=0), net, test, num_classes=4, n=80, seed=7)
    g, b = good.scores(), bad.scores()
    assert set(g) == {"class_entropy", "label_accuracy", "feature_fd"}
    assert g["label_accuracy"] >= 0.9 and abs(g["class_entropy"] - np.log(4)) < 0.1
    assert b["class_entropy"] < 0.2 and b["label_accuracy"] < 0.4
    assert b["feature_fd"] > 5 * g["feature_fd"]
    assert good.generate.calls == [(80, 7, [i % 4 for i in range(80)])]  # every class in turn, the set seed


def test_scores_are_the_protocol_maths_on_the_generated_images(bars):
    net, test, bank = bars
    gen = Recorder(bank)
    scorer = TrainingImageScorer(gen, net, test, num_classes=4, n=40, seed=3, test_images=50)
    out = scorer.scores()
    feats, pred = net.embed(gen(40, seed=3, labels=np.arange(40) % 4))
    assert out["feature_fd"] == stats.fd(feats, net.embed(test.images[:50])[0])
    assert out["class_entropy"] == stats.class_entropy(pred, 4)
    assert scorer.scores() == out  # the same seed each evaluation: same images, same numbers


def test_unconditional_and_without_a_network(bars):
    net, test, bank = bars
    gen = Recorder(bank)
    out = TrainingImageScorer(gen, net, None, num_classes=0, n=20).scores()
    assert set(out) == {"class_entropy"} and gen.calls[0][2] is None  # no labels asked for, no test set
    assert TrainingImageScorer(gen, None, test, n=20).scores() == {}
    assert TrainingImageScorer(gen, net, test, n=0).scores() == {}
    with pytest.raises(ValueError, match="TrainingImageScorer: n and num_classes must be >= 0"):
        TrainingImageScorer(gen, net, test, n=-1)


def test_grids_a_row_per_class_to_png_and_tensorboard(bars, tmp_path):
    _, _, bank = bars
    gen = Recorder(bank)
    monitor = FakeMonitor()
    path = TrainingImageScorer(gen, None, None, num_classes=4, seed=5).write_grid(12, monitor, tmp_path)
    assert path == tmp_path / "step000012.png"
    assert gen.calls == [(32, 5, [i // 8 for i in range(32)])]  # row r is class r
    with Image.open(path) as img:
        assert img.size == (8 * 18 + 2, 4 * 18 + 2)
    assert monitor.images == [("samples", (4 * 18 + 2, 8 * 18 + 2, 1), 12)]
    uncond = Recorder(bank)
    grid = TrainingImageScorer(uncond, None, None, grid_cols=4, grid_rows=3).grid()
    assert grid.shape == (3 * 18 + 2, 4 * 18 + 2, 1) and uncond.calls == [(12, 0, None)]
    many = Recorder(bank)
    TrainingImageScorer(many, None, None, num_classes=40).grid()
    assert many.calls[0][0] == 80  # at most 10 class rows
