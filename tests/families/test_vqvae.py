"""The VQ-VAE family: training logs and grids, article 002's epoch lines, resume, the pipeline, sample and eval."""
import argparse
import json

import numpy as np
import pytest
import torch

import genforge
from genforge.families import base, vqvae
from tests.conftest import make_digit_like

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"model": {"width": 8, "res_blocks": 1, "codebook_size": 16, "code_dim": 4, "dead_after": 2},
        "train": {"batch_size": 8, "max_iters": 6, "eval_interval": 3, "log_interval": 1, "dtype": "fp32",
                  "threads": 1},
        "vq": {"monitor_images": 16, "grid_pairs": 4}}


def overrides(path, **sections):
    ov = {k: dict(v) for k, v in TINY.items()}
    ov["data"] = {"path": str(path)}
    for name, values in sections.items():
        ov.setdefault(name, {}).update(values)
    return ov


def rows(run):
    return [json.loads(line) for line in run.file("metrics.jsonl").read_text().splitlines()]


def test_training_logs_reconstruction_and_codebook_usage_and_writes_pair_grids(image_npz, tmp_path):
    run, result = vqvae.train(None, overrides(image_npz), out=str(tmp_path / "run"), progress=False)
    assert result.step == 6 and result.metric == "val_mse"
    evals = [r for r in rows(run) if "eval/val_mse" in r]
    assert [r["step"] for r in evals] == [3, 6]
    last = evals[-1]
    assert 0 < last["eval/codes_used"] <= 1 and 1 <= last["eval/perplexity"] <= 16
    assert last["eval/dead_codes"] == round(16 * (1 - last["eval/codes_used"]))
    assert last["eval/codes_restarted"] >= 0 and last["eval/val_mse"] < evals[0]["eval/val_mse"]
    train_rows = [r for r in rows(run) if "train/recon" in r]
    assert train_rows and all("train/perplexity" in r and "train/commit" in r for r in train_rows)
    from PIL import Image
    grid = Image.open(run.file("samples") / "step000006.png")
    assert grid.size == (2 * 4 * 30 + 2, 30 + 2)  # one row: 4 (real | reconstruction) pairs of 28x28 + padding
    assert any((run.path / "tb").iterdir())


def test_ae002_is_the_linear_autoencoder_with_bce_and_prints_the_epoch_lines(image_npz, tmp_path, capsys):
    # 64 images, 10% held out: 57 train images, batches of 8 -> 7 steps an epoch; 14 steps = 2 epochs
    ov = overrides(image_npz, model={"width": 32, "codebook_size": 16}, train={"max_iters": 14, "eval_interval": 7})
    run, _ = vqvae.train("ae002", ov, out=str(tmp_path / "run"), progress=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch [")]
    assert len(lines) == 2 and lines[0].startswith("Epoch [1/2], Loss: ") and lines[1].startswith("Epoch [2/2], Loss: ")
    pipe = genforge.load(run.path)
    c = pipe.model.config
    assert (c.arch, c.loss, c.leak, c.dropout, c.groups) == ("mlp", "bce", 0.2, 0.3, 16)
    assert isinstance(pipe.model.encoder[3], torch.nn.Dropout) and not pipe.model.training
    assert pipe.grid == (1, 16) and pipe.encode(make_digit_like(3)[0][..., None]).shape == (3, 16)


def test_resume_continues_to_the_same_weights(image_npz, tmp_path):
    straight, _ = vqvae.train(None, overrides(image_npz), out=str(tmp_path / "a"), progress=False)
    vqvae.train(None, overrides(image_npz, train={"max_iters": 3}), out=str(tmp_path / "b"), progress=False)
    resumed, _ = vqvae.train(None, {"train": {"max_iters": 6}}, out=str(tmp_path / "b"), resume=True, progress=False)
    a, _ = vqvae.load_tokenizer(straight.path)
    b, _ = vqvae.load_tokenizer(resumed.path)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vq")
    images, labels = make_digit_like(n=96)
    np.savez(folder / "bars.npz", images=images, labels=labels)
    torch.set_num_threads(1)
    run, _ = vqvae.train(None, overrides(folder / "bars.npz"), out=str(folder / "run"), progress=False)
    return run


def test_pipeline_and_tokenizer_encode_decode_uint8_images(trained):
    pipe = genforge.load(trained.path)
    assert isinstance(pipe, base.ImageTokenizerPipeline) and not isinstance(pipe, base.ImageGenerationPipeline)
    images = make_digit_like(5)[0][..., None]
    codes = pipe.encode(images)
    assert codes.dtype == np.int64 and codes.shape == (5, 49) and codes.max() < pipe.codebook_size
    out = pipe.decode(codes)
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert np.array_equal(out, pipe.reconstruct(images))
    model, meta = vqvae.load_tokenizer(trained.path)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert meta["family"] == "vqvae" and meta["config"]["model"]["codebook_size"] == 16
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert np.array_equal(model.encode(x).numpy(), codes)
    with pytest.raises(ValueError, match=r"images: expected uint8 \(N, 28, 28, 1\), got uint8 \(5, 28, 28\)"):
        pipe.encode(images[..., 0])
    with pytest.raises(ValueError, match="codes must be in 0..15"):
        pipe.decode(np.full((1, 49), 16))


def test_load_tokenizer_refuses_another_familys_run(trained, tmp_path):
    from genforge.families import gan
    other, _ = gan.train(None, {"data": {"path": str(trained.path.parent / "bars.npz")},
                                "model": {"g_width": 8, "d_width": 4, "z_dim": 8},
                                "train": {"max_iters": 1, "batch_size": 4, "threads": 1},
                                "gan": {"monitor_samples": 0}}, out=str(tmp_path / "gan"), progress=False)
    with pytest.raises(ValueError, match="holds a 'gan' run, not a 'vqvae' run"):
        vqvae.load_tokenizer(other.path)


def test_eval_reports_mse_feature_fd_recognisability_and_usage(trained, capsys):
    args = argparse.Namespace(run=str(trained.path), data=None, n=20, seed=0, feature_steps=30, device="cpu")
    assert vqvae.eval_command(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 10  # the held-out 10% of 96 images
    for key in ("mse", "perplexity", "codes_used", "dead_codes", "feature_fd", "feature_fd_floor", "label_accuracy",
                "label_accuracy_floor"):
        assert isinstance(report[key], float), key
    assert report["feature_net"].startswith("feature-cnn")


def test_sample_writes_real_and_reconstruction_pairs(trained, tmp_path):
    pipe = genforge.load(trained.path)
    out = tmp_path / "recon.png"
    args = argparse.Namespace(run=str(trained.path), out=str(out), n=4, seed=1)
    assert vqvae.sample_command(pipe, args) == 0
    from PIL import Image
    assert Image.open(out).size == (2 * 4 * 30 + 2, 30 + 2)


def test_usage_on_a_hand_case():
    u = vqvae.usage(np.array([[0, 0, 1, 1]]), k=4)
    assert u == {"perplexity": pytest.approx(2.0), "codes_used": 0.5, "dead_codes": 2.0}
