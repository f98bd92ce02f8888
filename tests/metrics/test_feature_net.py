"""The evaluation feature network: trained once per data set, cached by content hash, frozen."""
import numpy as np
import pytest

from genforge.data.images import ImageSet
from genforge.metrics import feature_net
from tests.conftest import make_digit_like

pytestmark = pytest.mark.usefixtures("one_thread")


def bars(n=64, seed=0):
    images, labels = make_digit_like(n, seed=seed)
    return ImageSet(images[..., None], labels, ["0", "1", "2", "3"], "bars")


def test_trained_cached_and_versioned(monkeypatch, tmp_path):
    train, test = bars(), bars(32, seed=1)
    net = feature_net.get(train, test, steps=40, verbose=False)
    assert net.id.startswith("feature-cnn/1:") and net.num_classes == 4
    assert net.test_accuracy >= 0.9  # the bars are easy to tell apart
    feats, pred = net.embed(test.images)
    assert feats.shape == (32, feature_net.FEATURE_DIM) and pred.shape == (32,)
    cached = list((tmp_path.parent.parent).glob("**/feature_nets/*.safetensors"))
    assert len(cached) >= 1

    def no_training(*a, **k):
        raise AssertionError("a cached feature network must not be trained again")
    monkeypatch.setattr(feature_net, "_train", no_training)
    again = feature_net.get(train, test, steps=40, verbose=False)
    assert again.id == net.id and again.test_accuracy == net.test_accuracy
    assert np.array_equal(again.embed(test.images)[0], feats)
    other = bars(64, seed=5)  # different images: a different network
    assert feature_net.content_hash(other, 40, 0) != feature_net.content_hash(train, 40, 0)


def test_unlabelled_sets_get_a_seeded_random_network():
    data = ImageSet(bars().images, None, [], "unlabelled")
    a = feature_net.get(data, steps=40, verbose=False)
    assert a.id.startswith("random-cnn/1:") and a.num_classes == 0 and a.test_accuracy is None
    assert feature_net.get(data, steps=40, verbose=False).id == a.id
