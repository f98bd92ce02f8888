"""Image-metric maths: Fréchet distance, KID, k-NN precision/recall, class entropy."""
import math

import numpy as np
import pytest
import scipy.linalg

from genforge.metrics import stats


def reference_fd(a, b):
    """The textbook formula with scipy's matrix square root, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real))


@pytest.fixture
def feats():
    rng = np.random.default_rng(0)
    return rng.normal(size=(2000, 16)).astype(np.float32), rng.normal(size=(2000, 16)).astype(np.float32)


def test_fd_of_a_set_with_itself_is_zero(feats):
    a, _ = feats
    assert stats.fd(a, a) == pytest.approx(0.0, abs=1e-8)


def test_fd_grows_with_a_shift_and_matches_the_float64_reference(feats):
    a, b = feats
    shifted = b + 0.5
    assert stats.fd(a, shifted) > stats.fd(a, b) > 0
    assert stats.fd(a, shifted) == pytest.approx(reference_fd(a, shifted), rel=1e-9)
    # mean shift of 0.5 in 16 dims adds 16 * 0.25 = 4 to the distance of two same-distribution sets
    assert stats.fd(a, shifted) - stats.fd(a, b) == pytest.approx(4.0, abs=0.3)


def test_fd_with_singular_covariances():
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.normal(size=(500, 4)), np.zeros((500, 4))], 1)  # dead units, like ReLU features
    assert stats.fd(a, a) == pytest.approx(0.0, abs=1e-8)
    assert np.isfinite(stats.fd(a, a + 1.0))


def test_kid(feats):
    a, b = feats
    assert abs(stats.kid(a, b, subsets=10)) < 0.01  # unbiased: two samples of one distribution
    assert stats.kid(a, b + 1.0, subsets=10) > 0.1


def test_precision_recall():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(500, 8))
    assert stats.precision_recall(real, real) == (1.0, 1.0)
    p, r = stats.precision_recall(real, real + 100.0)
    assert p == 0.0 and r == 0.0
    # a collapsed generator (all fakes near one real point): precise, but no recall
    p, r = stats.precision_recall(real, real[:1] + rng.normal(size=(500, 8)) * 1e-3)
    assert p == 1.0 and r < 0.05


def test_class_entropy():
    assert stats.class_entropy(np.arange(1000) % 10, 10) == pytest.approx(math.log(10))
    assert stats.class_entropy(np.full(100, 3), 10) == 0.0
