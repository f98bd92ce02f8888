"""Temperature scaling and the L1 penalty of the classifier family (genforge/metrics/calibration.py,
genforge/families/classifier.py): fitted on validation only, saved in the checkpoint, applied everywhere."""
import json
import random

import numpy as np
import pytest
import torch

import genforge
from genforge import checkpoint
from genforge.cli import main
from genforge.families import classifier as C
from genforge.metrics.calibration import fit_temperature, nll
from genforge.metrics.classification import expected_calibration_error
from genforge.models.classifier import ClassifierConfig, TextClassifier, probabilities
from tests.conftest import make_reviews

FAST = {"train": {"threads": 1, "batch_size": 16}, "fit": {"epochs": 4, "tune": False}, "data": {"buckets": 4096}}


def overrides(path, **sections):
    out = {k: dict(v) for k, v in FAST.items()}
    out["data"]["path"] = str(path)
    for name, values in sections.items():
        out.setdefault(name, {}).update(values)
    return out


def overconfident(n=4000, K=1, scale=4.0, seed=0):
    """Labels drawn from the probabilities of `z`; the model reports scale * z (over-confident)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, K, generator=g) * 1.5
    p = probabilities(z)
    y = torch.multinomial(p, 1, generator=g)[:, 0]
    return z * scale, y


@pytest.mark.parametrize("K", [1, 3])
def test_temperature_undoes_overconfidence_and_lowers_ece(K):
    logits, y = overconfident(K=K, scale=4.0)
    t = fit_temperature(logits, y)
    assert 3.0 < t < 5.5  # the true model is logits / 4
    before = expected_calibration_error(y.numpy(), probabilities(logits).numpy())
    after = expected_calibration_error(y.numpy(), probabilities(logits / t).numpy())
    assert before > 0.1 and after < 0.03 and after < before / 3
    assert nll(logits, y, t) < nll(logits, y)
    # an under-confident model is sharpened, and argmax (accuracy) never moves
    soft, y2 = overconfident(K=K, scale=0.3, seed=1)
    assert fit_temperature(soft, y2) < 0.5
    assert torch.equal(probabilities(logits / t).argmax(1), probabilities(logits).argmax(1))
    assert fit_temperature(logits[:0], y[:0]) == 1.0


@pytest.fixture
def noisy(tmp_path):
    """Reviews with 30% flipped labels: a long-trained bag model is over-confident on held-out texts."""
    rows = make_reviews(400, seed=3)
    rng = random.Random(0)
    for r in rows:
        if rng.random() < 0.3:
            r["label"] = 1 - r["label"]
    p = tmp_path / "noisy.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    test = tmp_path / "noisy_test.jsonl"
    test.write_text("\n".join(json.dumps(r) for r in make_reviews(100, seed=9)) + "\n")
    return p, test


NOISY = {"fit": {"epochs": 30, "select": "last"}, "train": {"lr": 0.05, "min_lr": 0.05},
         "data": {"val_fraction": 0.25}}


def test_training_fits_saves_and_every_entry_point_applies_the_temperature(noisy, tmp_path, capsys):
    data, test = noisy
    run, _ = C.train("bag", overrides(data, **NOISY), out=str(tmp_path / "r"), progress=False)
    meta = checkpoint.read_meta(run.path / "checkpoints" / "best.safetensors")
    t = meta["calibration"]["temperature"]
    assert meta["calibration"]["fitted_on"] == "validation" and meta["calibration"]["n"] == 100
    assert t > 1.2  # over-confident on noisy labels: softened
    assert meta["calibration"]["val_nll_calibrated"] < meta["calibration"]["val_nll"]
    m = json.loads((run.path / "eval" / "val" / "metrics.json").read_text())
    assert m["temperature"] == t and m["ece"] < m["ece_uncalibrated"]
    assert m["log_loss"] < m["log_loss_uncalibrated"]

    # the Python API, rebuilt from the run folder alone
    pipe = genforge.load(run.path)
    texts = ["superb wonderful film the plot", "awful dull scene"]
    assert pipe.temperature == t
    raw, cal = pipe.predict_proba(texts, calibrated=False), pipe.predict_proba(texts)
    assert np.allclose(cal, probabilities(pipe.scores(texts) / t).numpy())
    assert (np.abs(cal - 0.5) < np.abs(raw - 0.5)).all()  # softened, same side
    capsys.readouterr()
    # `genforge classify` and `genforge eval` after reloading
    assert main(["classify", str(run.path)] + texts) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert np.allclose([l["probs"]["1"] for l in lines], cal[:, 1], atol=1e-6)
    assert main(["eval", str(run.path), "--data", str(test)]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["temperature"] == t and "ece_uncalibrated" in ev
    test_raw = genforge.load(run.path).evaluate(str(test))
    assert test_raw["ece"] == ev["ece"]


def test_calibrate_false_keeps_raw_probabilities_and_test_data_is_never_used(noisy, tmp_path):
    data, test = noisy
    off, _ = C.train("bag", overrides(data, fit={**NOISY["fit"], "calibrate": False},
                                      **{k: v for k, v in NOISY.items() if k != "fit"}),
                     out=str(tmp_path / "off"), progress=False)
    pipe = genforge.load(off.path)
    assert pipe.temperature == 1.0 and pipe.meta["calibration"]["method"] == "none"
    m = json.loads((off.path / "eval" / "val" / "metrics.json").read_text())
    assert m["temperature"] == 1.0 and m["ece"] == m["ece_uncalibrated"]
    # with and without a test split: the same fitted temperature (it is fitted on validation only)
    a, _ = C.train("bag", overrides(data, **NOISY), out=str(tmp_path / "a"), progress=False)
    b, _ = C.train("bag", overrides(data, data={**NOISY["data"], "test_path": str(test)}, fit=NOISY["fit"],
                                    train=NOISY["train"]), out=str(tmp_path / "b"), progress=False)
    ta, tb = genforge.load(a.path).temperature, genforge.load(b.path).temperature
    assert ta == tb and ta != 1.0
    assert (b.path / "eval" / "test" / "metrics.json").exists() and not (a.path / "eval" / "test").exists()


def test_old_checkpoints_load_with_temperature_one_and_ensembles(noisy, tmp_path, capsys):
    data, _ = noisy
    run, _ = C.train("bag", overrides(data, **NOISY), out=str(tmp_path / "r"), progress=False)
    ckpt = run.path / "checkpoints" / "best.safetensors"
    tensors, meta = checkpoint.load(ckpt)
    old = tmp_path / "old.safetensors"
    checkpoint.save(old, tensors, {k: v for k, v in meta.items() if k != "calibration"})
    texts = ["superb film", "dull scene"]
    new_pipe, old_pipe = genforge.load(ckpt), genforge.load(old)
    assert old_pipe.temperature == 1.0
    assert np.allclose(old_pipe.predict_proba(texts), new_pipe.predict_proba(texts, calibrated=False))

    other, _ = C.train("nbbag", overrides(data, **NOISY), out=str(tmp_path / "o"), progress=False)
    capsys.readouterr()
    plain = genforge.load(C.ensemble([str(run.path), str(other.path)], str(tmp_path / "e")).path)
    assert plain.temperature == 1.0 and "not calibrated again" in capsys.readouterr().err
    members = [genforge.load(run.path), genforge.load(other.path)]
    assert np.allclose(plain.predict_proba(texts), sum(0.5 * m.predict_proba(texts) for m in members), atol=1e-6)
    cal = genforge.load(C.ensemble([str(run.path), str(other.path)], str(tmp_path / "ec"), val_path=str(data)).path)
    assert cal.temperature != 1.0 and cal.meta["calibration"]["fitted_on"] == str(data)
    p = plain.predict_proba(texts)
    expected = p ** (1 / cal.temperature)
    assert np.allclose(cal.predict_proba(texts), expected / expected.sum(1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("arch, extra", [("bag", {"embed_dim": 8}), ("bag", {"embed_dim": 0, "nb": True}),
                                         ("lstm", {}), ("transformer", {"embed_dim": 16, "n_head": 2})])
def test_l1_penalty_touches_weights_never_biases_or_norms(arch, extra):
    torch.manual_seed(0)
    cfg = ClassifierConfig(arch=arch, vocab_size=50, num_classes=2, max_len=8, dropout=0.0, **extra)
    model = TextClassifier(cfg)
    for p in model.parameters():  # non-zero everywhere, so |w| has a gradient everywhere
        p.data.uniform_(0.1, 0.2)
    if arch == "bag":
        inputs = [torch.tensor([3, 4, 4, 7]), torch.tensor([0, 2])]
    else:
        inputs = [torch.randint(1, 50, (2, 8)), torch.tensor([8, 5])]
    C.l1_penalty(model, inputs).backward()
    for name, p in model.named_parameters():
        g = p.grad.to_dense() if p.grad is not None and p.grad.is_sparse else p.grad
        if p.dim() < 2:  # biases, norm gains
            assert g is None or not g.any(), name
        elif arch == "bag" and extra["embed_dim"] > 0 and name == "body.emb.weight":  # lazy: this batch's rows
            assert p.grad.is_sparse and set(g.abs().sum(1).nonzero()[:, 0].tolist()) == {3, 4, 7}
        else:
            assert g is not None and torch.allclose(g, torch.ones_like(g)), name  # d|w|/dw = sign(w) = 1


def test_l1_shrinks_trained_weights_and_bad_values_are_one_line_errors(reviews, tmp_path, capsys):
    norms = {}
    for l1 in (0.0, 1e-2):
        run, _ = C.train("nbbag", overrides(reviews, fit={"l1": l1}, train={"lr": 0.01}), out=str(tmp_path / f"l1-{l1}"),
                         progress=False)
        t, _ = checkpoint.load(run.path / "checkpoints" / "best.safetensors", prefix="module.model")
        norms[l1] = float(t["body.w"].abs().sum())
        assert genforge.load(run.path).classify(["superb loved"])[0]["label"] == "1"
    assert norms[1e-2] < 0.5 * norms[0.0]  # 49.8 -> 9.3 when written
    with pytest.raises(ValueError, match="fit.l1 must be a finite number >= 0, got -0.1"):
        C.train("nbbag", overrides(reviews, fit={"l1": -0.1}), out=str(tmp_path / "bad"), progress=False)
    capsys.readouterr()
    assert main(["train", "classifier", "--data", str(reviews), "--out", str(tmp_path / "bad2"), "--fit.l1=-1"]) == 2
    err = capsys.readouterr().err
    assert "fit.l1" in err and len(err.strip().splitlines()) == 1
