"""The command line for GANs, in-process: train a few steps, sample a grid, evaluate, and the errors."""
import json

import numpy as np
import pytest
from PIL import Image

from genforge.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--model.g_width=8", "--model.d_width=4", "--model.z_dim=16", "--train.batch_size=8",
        "--train.max_iters=4", "--train.eval_interval=2", "--train.dtype=fp32", "--train.threads=1",
        "--gan.feature_steps=30", "--gan.monitor_samples=32"]


def test_train_sample_eval(image_npz, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "gan", "--data", str(image_npz), "--out", str(run), "--preset", "cdcgan",
                 "--gan.loss=wgan-gp", "--no-progress"] + TINY) == 0
    assert "genforge sample" in capsys.readouterr().out
    assert (run / "checkpoints" / "best.safetensors").exists() and (run / "samples" / "step000004.png").exists()
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["gan"]["loss"] == "wgan-gp" and cfg["model"]["num_classes"] == 4 and cfg["model"]["spectral_norm"]
    assert main(["sample", str(run), "--n", "16", "--out", str(tmp_path / "g.png"), "--label", "2", "--seed", "1"]) == 0
    assert Image.open(tmp_path / "g.png").size == (8 * 30 + 2, 2 * 30 + 2)
    assert main(["sample", str(run), "--out", str(tmp_path / "rows.png")]) == 0  # a row per class (4 classes)
    assert Image.open(tmp_path / "rows.png").size == (8 * 30 + 2, 4 * 30 + 2)
    assert main(["sample", str(run), "--n", "20", "--out", str(tmp_path / "i.png"), "--interpolate"]) == 0
    assert Image.open(tmp_path / "i.png").size == (10 * 30 + 2, 2 * 30 + 2)
    assert main(["sample", str(run), "--n", "12", "--out", str(tmp_path / "s.npz"), "--seed", "2"]) == 0
    assert np.load(tmp_path / "s.npz")["images"].shape == (12, 28, 28, 1)
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "40"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n_generated"] == 40 and "feature_fd_floor" in rep and 0 <= rep["label_accuracy"] <= 1
    assert main(["eval", "--samples", str(tmp_path / "s.npz"), "--ref", str(image_npz), "--n", "12",
                 "--feature-steps", "30"]) == 0
    assert json.loads(capsys.readouterr().out)["n_generated"] == 12


@pytest.mark.parametrize("args,msg", [
    (["train", "gan", "--data", "/no/such/dir"], "not found: /no/such/dir"),
    (["train", "gan", "--gan.los=hinge"], "did you mean 'loss'"),
    (["train", "gan", "--preset", "dcgna"], "did you mean 'dcgan'"),
    (["eval", "--samples", "x.npz"], "--samples needs --ref"),
    (["eval"], "give a RUN, or --samples"),
])
def test_errors_are_one_line(args, msg, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_gpt_eval_still_needs_data(corpus, tmp_path, capsys):
    run = tmp_path / "gpt"
    assert main(["train", "gpt", "--data", str(corpus), "--out", str(run), "--no-progress", "--model.n_layer=1",
                 "--model.n_head=2", "--model.n_embd=32", "--model.block_size=32", "--train.max_iters=2",
                 "--train.eval_interval=2", "--train.dtype=fp32", "--train.batch_size=4"]) == 0
    assert main(["eval", str(run)]) == 2
    assert "--data FILE is required" in capsys.readouterr().err
