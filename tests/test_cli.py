"""The command line, in-process: train a few steps, sample, eval, and the errors users see."""
import json
import subprocess
import sys

import pytest

from genforge.cli import main

TINY = ["--model.n_layer=1", "--model.n_head=2", "--model.n_embd=32", "--model.block_size=32",
        "--train.batch_size=4", "--train.max_iters=6", "--train.eval_interval=3", "--train.dtype=fp32"]


def test_help_is_instant_and_lists_commands():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "genforge", "--help"],
                         capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "sample" in out.stdout
    assert "torch" not in out.stderr  # no heavy import just to print help


def test_train_sample_eval(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "gpt", "--data", str(corpus), "--out", str(run), "--seed", "3", "--no-progress"] + TINY) == 0
    assert (run / "checkpoints" / "best.safetensors").exists()
    assert (run / "loss.png").exists() and (run / "metrics.jsonl").exists() and any((run / "tb").iterdir())
    assert json.loads((run / "config.json").read_text())["config"]["train"]["seed"] == 3
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "First", "--max-new-tokens", "20", "--seed", "1",
                 "--num-samples", "2", "--top-k", "5", "--top-p", "0.9"]) == 0
    out = capsys.readouterr().out
    assert out.count("First") >= 2 and "sample 2/2" in out
    assert main(["eval", str(run), "--data", str(corpus)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"loss", "perplexity", "bits_per_char", "bits_per_byte"} <= metrics.keys()


@pytest.mark.parametrize("args,msg", [
    (["train", "gpt", "--data", "/no/such/file.txt"], "not found: /no/such/file.txt"),
    (["train", "gpt", "--data", "{corpus}", "--model.n_layr=2"], "did you mean 'n_layer'"),
    (["train", "gpt", "--data", "{corpus}", "--preset", "tiny"], "unknown preset 'tiny'"),
    (["train", "gpt", "--data", "{corpus}", "--train.lr=fast"], "train.lr: expected a number"),
    (["train", "gan2", "--data", "{corpus}"], "unknown model family"),
    (["sample", "{tmp}/missing-run"], "run not found"),
])
def test_bad_input_is_one_clear_line(args, msg, corpus, tmp_path, capsys):
    args = [a.format(corpus=corpus, tmp=tmp_path) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_bad_sampling_arguments(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "gpt", "--data", str(corpus), "--out", str(run), "--no-progress"] + TINY)
    for args, msg in [(["--max-new-tokens", "0"], "max_new_tokens"), (["--temperature", "-1"], "temperature"),
                      (["--top-p", "1.5"], "top_p"), (["--prompt", "你"], "not in this model")]:
        capsys.readouterr()
        assert main(["sample", str(run)] + args) == 2
        captured = capsys.readouterr()
        assert msg in captured.err and captured.out == ""


def test_invalid_utf8_and_errors_replace(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello world\n" * 200 + b"\xff\xfe" + b"more text\n" * 50)
    assert main(["train", "gpt", "--data", str(bad), "--out", str(tmp_path / "a"), "--no-progress"] + TINY) == 2
    assert "invalid UTF-8 at byte offset 2400" in capsys.readouterr().err
    assert main(["train", "gpt", "--data", str(bad), "--out", str(tmp_path / "b"), "--errors", "replace",
                 "--no-progress"] + TINY) == 0


def test_foreign_checkpoint_is_refused(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file
    f = tmp_path / "weights.safetensors"
    save_file({"w": torch.ones(1)}, str(f))
    assert main(["sample", str(f)]) == 2
    assert "not a genforge checkpoint" in capsys.readouterr().err
