"""The imageclf family on tiny synthetic images: overfit, round trip, augmentation, extra data,
data.fraction, bad inputs, the CLI and the /v1/images/classifications route."""
import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import genforge
from genforge import config
from genforge.cli import main
from genforge.families import imageclf as I
from genforge.models.imageclf import augment
from genforge.server import create_app
from tests.conftest import make_digit_like

pytestmark = pytest.mark.usefixtures("one_thread")
# tiny models, a fixed number of steps and one evaluation (each evaluation redraws the loss plot)
SMALL = {"model": {"width": 8, "hidden": 16}, "train": {"batch_size": 16, "max_iters": 30, "eval_interval": 30},
         "fit": {"epochs": 0}}


def bars(tmp_path, n=96, name="bars.npz", shift=0, seed=0):
    """n labelled 28x28 images, 4 classes (a bright bar in band k); labels shifted by `shift` (mod 4)."""
    images, labels = make_digit_like(n=n, seed=seed)
    path = tmp_path / name
    np.savez(path, images=images, labels=(labels + shift) % 4)
    return str(path)


def ov(path, **sections):
    out = {k: dict(v) for k, v in SMALL.items()}
    out["data"] = {"path": path}
    for name, values in sections.items():
        out.setdefault(name, {}).update(values)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("imageclf")
    torch.set_num_threads(1)
    run, result = I.train("cnn", ov(bars(tmp)), out=str(tmp / "run"), progress=False)
    return run, result, tmp


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, format="PNG")
    return buf.getvalue()

# ----------------------------------------------------------------------------- training and round trip


@pytest.mark.parametrize("preset", ["cnn", "resnet"])
def test_preset_overfits_a_tiny_set(preset, tmp_path):
    data = bars(tmp_path, n=32)
    run, _ = I.train(preset, ov(data, data={"val_fraction": 0.0}, train={"batch_size": 8, "max_iters": 60, "eval_interval": 60}),
                     out=str(tmp_path / "r"), progress=False)
    pipe = genforge.load(run.path)
    s = I.splits(config.update(I.ImageClassifierDataConfig(), {"path": data, "val_fraction": 0.0}, "data"),
                 pipe.model.config)
    assert pipe.evaluate_set(s.train)["accuracy"] == 1.0  # every training image right


def test_train_writes_test_accuracy_and_reloads_identically(trained):
    run, result, tmp = trained
    summary = json.loads((run.path / "eval.json").read_text())
    assert summary["test_accuracy"] == 1.0 and summary["n_test"] == 10 and summary["n_val"] == 8
    last = json.loads((run.path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["eval/test_accuracy"] == summary["test_accuracy"] and last["step"] == result.step
    assert (run.path / "eval" / "test" / "confusion.png").exists()
    assert json.loads((run.path / "eval" / "val" / "metrics.json").read_text())["n"] == 8
    a, b = genforge.load(run.path), genforge.load(run.checkpoint("best"))
    images = make_digit_like(n=8, seed=5)[0][..., None]
    assert np.array_equal(a.predict_proba(images), b.predict_proba(images))
    assert a.meta["calibration"]["fitted_on"] == "validation" and a.temperature == b.temperature
    raw, cal = a.predict_proba(images, calibrated=False), a.predict_proba(images)
    assert np.array_equal(raw.argmax(1), cal.argmax(1)) and not np.allclose(raw, cal)
    assert [r["label"] for r in a.classify(images)] == [str(k) for k in make_digit_like(n=8, seed=5)[1]]
    assert a.evaluate(bars(tmp))["accuracy"] == 1.0  # the test split of the same file, as in training

# ----------------------------------------------------------------------------- augmentation


def test_augmentation_keeps_shapes_is_seeded_and_does_what_it_says():
    x = torch.rand(6, 1, 12, 12) * 2 - 1

    def g(seed):
        return torch.Generator().manual_seed(seed)
    assert augment(x, g(0)) is x  # every option off: the batch itself
    a, b, c = (augment(x, g(s), crop=2, rotate=10, flip=True) for s in (0, 0, 1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    shifted = augment(x, g(3), crop=2)  # integer shifts: each image is x moved, the border black
    for i in range(len(x)):
        pad = torch.nn.functional.pad(x[i], (2, 2, 2, 2), value=-1.0)
        crops = [pad[:, 2 + dy:14 + dy, 2 + dx:14 + dx] for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(torch.allclose(shifted[i], crop, atol=1e-5) for crop in crops)
    flipped = augment(x, g(4), flip=True)
    kinds = [torch.allclose(flipped[i], x[i], atol=1e-5) or torch.allclose(flipped[i], x[i].flip(-1), atol=1e-5)
             for i in range(len(x))]
    assert all(kinds) and not torch.allclose(flipped, x, atol=1e-5)


def test_augmented_training_is_deterministic(tmp_path):
    data = bars(tmp_path, n=32)
    aug = {"crop": 2, "rotate": 10.0}
    runs = [I.train("cnn", ov(data, aug=aug, train={"max_iters": 4, "eval_interval": 4}, fit={"calibrate": False}), out=str(tmp_path / f"r{i}"), progress=False)[0]
            for i in range(2)]
    images = make_digit_like(n=4, seed=9)[0][..., None]
    p0, p1 = (genforge.load(r.path).predict_proba(images, calibrated=False) for r in runs)
    assert np.array_equal(p0, p1)

# ----------------------------------------------------------------------------- extra data and fraction


def test_mixed_order_draws_the_extra_share_of_every_batch():
    order = I.MixedOrder(40, 20, 0.25, torch.Generator().manual_seed(0))
    for _ in range(10):
        idx = order.next(16)
        assert len(idx) == 16 and int((idx >= 40).sum()) == 4 and int(idx.max()) < 60
    only = I.MixedOrder(0, 20, 1.0, torch.Generator().manual_seed(0))
    assert all(int(i) >= 0 for i in only.next(8)) and len(only.next(8)) == 8


def test_extra_data_trains_but_validation_and_test_stay_real(tmp_path):
    real = bars(tmp_path)
    # the extra set: class folders '1', '2', '3' holding the bars of classes 0, 1, 2 (every label moved on one)
    images, labels = make_digit_like(n=96, seed=1)
    for i in np.flatnonzero(labels < 3):
        (tmp_path / "extra" / str(labels[i] + 1)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(tmp_path / "extra" / str(labels[i] + 1) / f"{i}.png")
    wrong = str(tmp_path / "extra")
    dc = config.update(I.ImageClassifierDataConfig(), {"path": real}, "data")
    mc = I.ImageClassifierConfig()
    plain, mixed = I.splits(dc, mc), I.splits(config.update(dc, {"extra": wrong}, "data"), mc)
    assert np.array_equal(plain.val.images, mixed.val.images) and np.array_equal(plain.test.images, mixed.test.images)
    assert np.array_equal(plain.train.images, mixed.train.images) and len(mixed.extra) == 72
    assert np.bincount(mixed.extra.labels).tolist() == [0, 24, 24, 24]  # matched to the real classes by name
    # trained on the extra set alone (W = 1), it learns the moved labels: the real validation and test sets say so
    run, _ = I.train("cnn", ov(real, data={"extra": wrong, "extra_weight": 1.0}), out=str(tmp_path / "r"),
                     progress=False)
    summary = json.loads((run.path / "eval.json").read_text())
    assert summary["n_train_real"] == 0 and summary["n_train_extra"] == 72 and summary["n_test"] == 10
    seen = plain.test.labels < 3  # test images of the classes the extra set holds, one class on
    pred = genforge.load(run.path).predict_proba(plain.test.images[seen]).argmax(1)
    assert np.array_equal(pred, plain.test.labels[seen] + 1) and summary["test_accuracy"] <= 1 - seen.mean() + 1e-9


def test_fraction_subsets_are_stratified_seeded_nested_and_disjoint_from_val_and_test(tmp_path):
    images, labels = make_digit_like(n=400, seed=2)
    images[:, 0, :2] = np.stack([np.arange(400) // 256, np.arange(400) % 256], 1)  # every image unique
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    mc = I.ImageClassifierConfig()

    def keys(d):
        return {im.tobytes() for im in d.images}

    def split(**kw):
        return I.splits(config.update(I.ImageClassifierDataConfig(), {"path": str(tmp_path / "d.npz"), **kw}, "data"), mc)
    full, tenth, again, other = split(), split(fraction=0.1), split(fraction=0.1, extra_weight=0.9), split(fraction=0.1, seed=1)
    assert np.bincount(tenth.train.labels).tolist() == [8, 8, 8, 8]  # 10% of each class's 81 training images
    assert keys(tenth.train) == keys(again.train) and keys(tenth.train) != keys(other.train)
    assert keys(tenth.train) <= keys(split(fraction=0.5).train) <= keys(full.train)
    assert not keys(tenth.train) & (keys(full.val) | keys(full.test))
    assert keys(tenth.val) == keys(full.val) and keys(tenth.test) == keys(full.test)

# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_are_clear_errors(trained, tmp_path):
    run, _, _ = trained
    pipe = genforge.load(run.path)
    with pytest.raises(ValueError, match=r"images: expected uint8 \(N, 28, 28, 1\), got float64"):
        pipe.predict_proba(np.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match=r"images: expected uint8 .* got uint8 \(2, 28, 28\)"):
        pipe.predict_proba(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="b.png: not a readable image"):
        pipe.read_images([png_bytes(np.zeros((5, 5, 1), np.uint8)), b"not a png"], ["a.png", "b.png"])
    assert pipe.read_images([png_bytes(np.zeros((40, 30, 3), np.uint8))], ["x"]).shape == (1, 28, 28, 1)
    data = bars(tmp_path)
    for bad, message in [({"fraction": 0.0}, "data.fraction"), ({"extra_weight": 0.0}, "data.extra_weight"),
                         ({"path": "no-such-set"}, "data.path no-such-set"),
                         ({"extra": str(tmp_path / "missing")}, "data.extra")]:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            I.train("cnn", ov(data, data=bad), out=str(tmp_path / "bad"), progress=False)
    np.savez(tmp_path / "nolabels.npz", images=make_digit_like()[0])
    with pytest.raises(ValueError, match="data.path .*nolabels.npz.* no labels"):
        I.train("cnn", ov(str(tmp_path / "nolabels.npz")), out=str(tmp_path / "bad"), progress=False)
    images, labels = make_digit_like(n=20)
    np.savez(tmp_path / "five.npz", images=images, labels=labels + 1)  # classes 1..4: '4' is unknown to the real set
    with pytest.raises(ValueError, match=r"data.extra .*five.npz.*\['4'\] are not among"):
        I.splits(config.update(I.ImageClassifierDataConfig(), {"path": data, "extra": str(tmp_path / "five.npz")},
                               "data"), I.ImageClassifierConfig())

# ----------------------------------------------------------------------------- CLI and server


def test_cli_classify_eval_and_cv(trained, tmp_path, capsys):
    run, _, tmp = trained
    images, labels = make_digit_like(n=2, seed=7)
    files = []
    for i, img in enumerate(images):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).resize((56, 56)).save(files[-1])  # another size: resized to 28x28
    assert main(["classify", str(run.path), *files]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in rows] == files and [r["label"] for r in rows] == [str(k) for k in labels]
    assert main(["classify", str(run.path), str(tmp_path / "nope.png")]) == 2
    assert "nope.png: no such image file" in capsys.readouterr().err
    assert main(["eval", str(run.path)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0
    assert main(["cv", "--family", "imageclf", "--folds", "2", "--data", bars(tmp_path, n=32), "--out",
                 str(tmp_path / "cv"), "--model.width=4", "--model.hidden=8", "--fit.epochs=0", "--train.max_iters=4", "--train.eval_interval=4",
                 "--no-progress"]) == 0
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert cv["folds"] == 2 and len(cv["per_fold"]) == 2 and sum(f["n"] for f in cv["per_fold"]) == 29
    assert main(["cv", "--family", "gan", "--data", "x"]) == 2


def test_server_route_classifies_base64_images_and_refuses_bad_ones(trained):
    from fastapi.testclient import TestClient
    run, _, _ = trained
    images, labels = make_digit_like(n=3, seed=8)
    good = [base64.b64encode(png_bytes(img[..., None])).decode() for img in images]
    good[1] = "data:image/png;base64," + good[1]
    with TestClient(create_app({"bars": genforge.load(run.path)})) as client:
        while client.get("/health").status_code != 200:
            pass
        r = client.post("/v1/images/classifications", json={"model": "bars", "images": good})
        assert r.status_code == 200, r.text
        assert [d["label"] for d in r.json()["data"]] == [str(k) for k in labels] and r.json()["size"] == "28x28"
        assert abs(sum(r.json()["data"][0]["probs"].values()) - 1) < 1e-6
        info = client.get("/v1/models/bars").json()
        assert info["family"] == "imageclf" and info["image_size"] == 28 and info["labels"] == ["0", "1", "2", "3"]
        bad = [({"model": "bars", "images": ["%%%"]}, "images[0]: not valid base64"),
               ({"model": "bars", "images": [good[0], base64.b64encode(b"plain text").decode()]},
                "images[1]: not a readable image"),
               ({"model": "bars", "images": []}, "images"),
               ({"model": "bars", "images": "abc"}, "images"),
               ({"model": "bars", "images": [good[0]], "size": "28x28"}, "size")]
        for body, message in bad:
            r = client.post("/v1/images/classifications", json=body)
            assert r.status_code == 400 and message in r.json()["error"]["message"], r.text
        r = client.post("/v1/images/classifications", json={"model": "nope", "images": good})
        assert r.status_code == 404
