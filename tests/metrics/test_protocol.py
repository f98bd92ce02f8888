"""The evaluation protocol: floors beside every number, samples from any tool, clear errors."""
import numpy as np
import pytest
from PIL import Image

from genforge.metrics import protocol
from tests.conftest import make_digit_like

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def ref_npz(tmp_path):
    images, labels = make_digit_like(200, seed=0)
    p = tmp_path / "ref.npz"
    np.savez(p, images=images, labels=labels)
    return p


def test_real_images_score_near_the_floor_and_noise_far_from_it(ref_npz, tmp_path):
    images, labels = make_digit_like(100, seed=9)
    good = tmp_path / "good.npz"
    np.savez(good, images=images, labels=labels)
    rep = protocol.evaluate_samples(str(good), str(ref_npz), n=100, kid_subsets=5, feature_steps=40)
    assert rep["feature_net"].startswith("feature-cnn/1:") and rep["n_generated"] == 100
    for key in ("feature_fd", "kid", "precision", "recall", "class_entropy"):
        assert f"{key}_floor" in rep
    assert rep["label_accuracy"] >= 0.9 and rep["classes_covered"] == 4
    noise = tmp_path / "noise.npz"
    np.savez(noise, images=np.random.default_rng(0).integers(0, 255, (100, 28, 28)).astype(np.uint8))
    bad = protocol.evaluate_samples(str(noise), str(ref_npz), n=100, kid_subsets=5, feature_steps=40)
    assert bad["feature_fd"] > 5 * rep["feature_fd"] and "label_accuracy" not in bad


def test_folder_of_pngs_with_class_folders(ref_npz, tmp_path):
    images, labels = make_digit_like(40, seed=3)
    for i, (img, y) in enumerate(zip(images, labels)):
        (tmp_path / "s" / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "s" / str(y) / f"{i}.png")
    rep = protocol.evaluate_samples(str(tmp_path / "s"), str(ref_npz), n=40, kid_subsets=2, feature_steps=40)
    assert rep["n_generated"] == 40 and rep["label_accuracy"] >= 0.9


def test_errors(tmp_path, ref_npz):
    with pytest.raises(FileNotFoundError, match="--ref nosuchset"):
        protocol.resolve_dataset("nosuchset")
    with pytest.raises(FileNotFoundError, match="--samples /no/such"):
        protocol.evaluate_samples("/no/such", str(ref_npz))
    with pytest.raises(NotImplementedError, match="Inception FID is not available"):
        protocol.evaluate_samples(str(ref_npz), str(ref_npz), inception=True)
