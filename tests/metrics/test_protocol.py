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


class FakeImagePipeline:
    """Not a GAN: an `ImagePipeline` that 'generates' fresh bar images of each requested class."""

    family = "fake-images"
    image_size, channels, num_classes = 28, 1, 4

    def __init__(self, data_path, bad_shape=False):
        self.meta = {"config": {"data": {"path": str(data_path), "test_fraction": 0.1},
                                "train": {"seed": 0}, "fake-images": {"feature_steps": 40}}}
        self.bad_shape, self.calls = bad_shape, []

    def generate(self, n, seed=None, labels=None):
        self.calls.append((n, seed, labels))
        images, made = make_digit_like(4 * n, seed=100 + seed)
        pick = [np.flatnonzero(made == k)[i // 4] for i, k in enumerate(labels)]  # an image of each class asked for
        out = images[pick][..., None]
        return out[:, :20] if self.bad_shape else out


def test_a_non_gan_image_pipeline_is_scored_by_the_same_protocol(ref_npz, tmp_path, monkeypatch):
    pipe = FakeImagePipeline(ref_npz)
    rep = protocol.evaluate_pipeline(pipe, n=80, seed=2, kid_subsets=3)
    assert pipe.calls == [(80, 2, [i % 4 for i in range(80)])]  # every class in turn, the given seed
    assert rep["data"] == str(ref_npz) and rep["n_generated"] == 80
    assert rep["label_accuracy"] >= 0.9 and rep["classes_covered"] == 4 and "feature_fd_floor" in rep
    # the same images scored as samples on disk: the same numbers, with the run's own feature network
    np.savez(tmp_path / "same.npz", images=pipe.generate(80, seed=2, labels=[i % 4 for i in range(80)])[..., 0],
             labels=np.arange(80) % 4)
    disk = protocol.evaluate_samples(str(tmp_path / "same.npz"), str(ref_npz), n=80, seed=2, kid_subsets=3,
                                     feature_steps=40)
    assert {k: v for k, v in rep.items() if k != "data"} == {k: v for k, v in disk.items() if k not in ("samples", "ref")}
    from genforge import inference
    monkeypatch.setattr(inference, "load", lambda run, device="auto": FakeImagePipeline(ref_npz))
    assert protocol.evaluate_run("runs/fake", n=80, seed=2, kid_subsets=3) == {"run": "runs/fake", **rep}


def test_pipelines_that_make_no_images_are_refused_clearly(ref_npz):
    class TextPipeline:
        family, meta = "gpt", {"config": {}}

        def generate(self, prompt):
            return prompt
    with pytest.raises(ValueError, match=r"runs/t: a 'gpt' run; image metrics need a run that generates images "
                                         r"\(its pipeline lacks image_size, channels, num_classes\)"):
        protocol.evaluate_pipeline(TextPipeline(), where="runs/t")
    with pytest.raises(ValueError, match=r"generate\(\) must return uint8 \(8, 28, 28, 1\), returned uint8 \(8, 20, 28, 1\)"):
        protocol.evaluate_pipeline(FakeImagePipeline(ref_npz, bad_shape=True), n=8, kid_subsets=2)
    no_data = FakeImagePipeline(ref_npz)
    del no_data.meta["config"]["data"]["path"]
    with pytest.raises(ValueError, match=r"its config names no data.path; pass the reference data set"):
        protocol.evaluate_pipeline(no_data, n=8)


def test_a_run_on_a_captioned_set_with_its_own_field_names(tmp_path):
    images, labels = make_digit_like(120, seed=0)
    rows = ["file,text,digit"]
    for i, (img, y) in enumerate(zip(images, labels)):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,a bar in band {y},{y}")
    (tmp_path / "caps.csv").write_text("\n".join(rows) + "\n")
    pipe = FakeImagePipeline(tmp_path / "caps.csv")
    pipe.meta["config"]["data"].update(image_field="file", caption_field="text", label_field="digit")
    rep = protocol.evaluate_pipeline(pipe, n=40, kid_subsets=2)
    assert rep["data"] == str(tmp_path / "caps.csv") and rep["feature_net"].startswith("feature-cnn/1:")
    assert rep["label_accuracy"] >= 0.9 and rep["n_reference"] == 12  # the digit column labels the reference
