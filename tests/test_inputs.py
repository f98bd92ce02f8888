"""Inputs users bring and small promises: folder corpora read text files only, Keras-style .npz, float and
odd-sized images converted and said, progress as lines in logs, checkpoint file modes, finite config numbers.
"""
import io
import os
import stat

import numpy as np
import pytest

from genforge import checkpoint
from genforge.cli import main


def test_folder_corpus_reads_text_files_and_says_what_it_skipped(tmp_path, capsys):
    from genforge.data.text import corpus_files, iter_corpus
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("hello\n")
    (folder / "sub" / "b.md").write_text("world\n")
    (folder / "rows.jsonl").write_text('{"text": "row"}\n')
    (folder / "table.csv").write_text("x,y\n1,2\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x01\xff\xfe binary")
    files = corpus_files(folder)
    assert [p.name for p in files] == ["a.txt", "rows.jsonl", "b.md"]
    err = capsys.readouterr().err
    assert "skipped 2 file(s)" in err and "table.csv" in err and ".DS_Store" in err
    assert "".join(c for c in iter_corpus(folder) if c) == "hello\nrowworld\n"  # no invalid-UTF-8 error


def test_keras_npz_is_read_with_its_own_split(tmp_path):
    from genforge.data.images import load
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), y_train=np.arange(30) % 10,
             x_test=np.full((7, 28, 28), 9, np.uint8), y_test=np.arange(7) % 10)
    train, test = load(str(path), 28, 1, "train"), load(str(path), 28, 1, "test")
    assert len(train) == 30 and len(test) == 7 and (test.images == 9).all()
    assert train.num_classes == 10 and list(test.labels) == list(np.arange(7) % 10)
    assert "train split" in train.source and "test split" in test.source


def test_float_and_odd_sized_images_are_converted_and_said(tmp_path, capsys):
    from genforge.data.images import load
    path = tmp_path / "small.npz"
    images = np.linspace(0, 1, 20 * 16 * 16, dtype=np.float32).reshape(20, 16, 16)
    np.savez(path, images=images, labels=np.arange(20) % 2)
    data = load(str(path), 28, 1, "train", test_fraction=0)
    assert data.images.shape == (20, 28, 28, 1) and data.images.dtype == np.uint8 and data.images.max() > 200
    err = capsys.readouterr().err
    assert "pixels in [0, 1] scaled to uint8" in err and "16x16x1 converted to 28x28x1" in err


def test_progress_is_one_line_per_interval_when_not_a_terminal(tmp_path, monkeypatch):
    from genforge.monitor import Monitor
    from genforge.run import RunDir
    err = io.StringIO()  # not a terminal, like a log file
    monkeypatch.setattr("sys.stderr", err)
    run = RunDir(tmp_path / "run")
    (tmp_path / "run").mkdir()
    mon = Monitor(run, progress=True)
    mon.start(total=4)
    for step in range(4):
        mon.advance()
        if step % 2 == 1:
            mon.status({"loss": 1.5 - step * 0.1}, rate=100.0, unit="tok")
    mon.close()
    text = err.getvalue()
    assert "\r" not in text
    assert [ln for ln in text.splitlines() if ln.startswith("train:")] == [
        "train: step 2/4 | loss 1.4000 | 100 tok/s", "train: step 4/4 | loss 1.2000 | 100 tok/s"]


def test_checkpoints_get_a_normal_file_mode(tmp_path):
    import torch
    old = os.umask(0o022)
    try:
        path = checkpoint.save(tmp_path / "c.safetensors", {"w": torch.zeros(2)}, {"family": "gpt"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_config_numbers_name_the_key(value, corpus, capsys):
    assert main(["train", "gpt", "--data", str(corpus), f"--train.lr={value}"]) == 2
    err = capsys.readouterr().err
    assert "train.lr: expected a finite number" in err and err.count("\n") == 1


def test_ensemble_weights_that_are_not_numbers(tmp_path, capsys):
    assert main(["ensemble", "a", "b", "--out", str(tmp_path / "e"), "--weights", "1,abc"]) == 2
    assert "--weights 1,abc: expected comma-separated numbers" in capsys.readouterr().err


def test_requires_python_matches_the_tarfile_filter():
    import tomllib
    from pathlib import Path
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11.4"  # tarfile.extractall(filter="data") appeared in 3.11.4
    assert any(d.startswith("hypothesis==") for d in project["optional-dependencies"]["test"])
