"""Bad checkpoints, bad run folders and bad devices: one line naming the file, never a traceback.

Also: what a killed run leaves behind (temporary checkpoint files, partial token caches) is removed by
the next --resume / encode, and nothing else is.
"""
import copy
import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from genforge import checkpoint
from genforge.cli import main
from genforge.families import gpt

TINY = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "train": {"batch_size": 4, "max_iters": 2, "eval_interval": 2, "dtype": "fp32", "samples": False,
                  "device": "cpu", "warmup_iters": 0}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("validate")
    (root / "c.txt").write_text("hello world, the quick brown fox.\n" * 200)
    ov = copy.deepcopy(TINY)
    ov["data"] = {"path": str(root / "c.txt")}
    run, _ = gpt.train(overrides=ov, out=root / "run", progress=False)
    return run.path


def rewrite(src, dst, edit):
    """A copy of checkpoint `src` at `dst` whose metadata is edit(meta) (a dict, or a raw string)."""
    with safe_open(str(src), "pt") as f:
        meta = json.loads(f.metadata()["genforge"])
    new = edit(copy.deepcopy(meta))
    save_file(load_file(str(src)), str(dst), metadata={"genforge": new if isinstance(new, str) else json.dumps(new)})
    return dst


def _set(meta, path, value):
    *head, last = path
    d = meta
    for k in head:
        d = d[k]
    if value is KeyError:
        del d[last]
    else:
        d[last] = value
    return meta


BAD_META = {
    "layer count": (lambda m: _set(m, ["config", "model", "n_layer"], 2), "missing tensor h.1."),
    "vocab size": (lambda m: _set(m, ["config", "model", "vocab_size"], 99), "vocab_size is 99"),
    "tensor shape": (lambda m: _set(m, ["config", "model", "n_embd"], 32), "tensor wte.weight has shape"),
    "config not an object": (lambda m: _set(m, ["config"], "x"), "`config` is a JSON string"),
    "config section not an object": (lambda m: _set(m, ["config", "model"], [1]), "config.model is a JSON list"),
    "config value of the wrong type": (lambda m: _set(m, ["config", "model", "n_layer"], "many"), "model.n_layer"),
    "no tokenizer": (lambda m: _set(m, ["tokenizer"], KeyError), "has no `tokenizer`"),
    "one-character tokenizer": (lambda m: _set(m, ["tokenizer"], {"kind": "char", "chars": "a"}),
                                "at least 2 distinct characters"),
    "tokenizer not an object": (lambda m: _set(m, ["tokenizer"], 7), "tokenizer is a JSON int"),
    "metadata not JSON": (lambda m: "{oops", "not valid JSON"),
    "metadata not an object": (lambda m: "[1, 2]", "not an object"),
    "unknown family": (lambda m: _set(m, ["family"], "vae"), "unknown model family 'vae'"),
}


@pytest.mark.parametrize("case", list(BAD_META))
def test_bad_checkpoint_metadata_is_one_line_naming_the_file(case, tiny, tmp_path, capsys):
    edit, msg = BAD_META[case]
    bad = rewrite(tiny / "checkpoints" / "best.safetensors", tmp_path / "bad.safetensors", edit)
    capsys.readouterr()
    assert main(["sample", str(bad), "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genforge: error: {bad}") and msg in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_load_module_names_the_tensor(tiny):
    tensors, meta = checkpoint.load(tiny / "checkpoints" / "best.safetensors", prefix="module.model")
    from genforge.models.gpt import GPT, GPTConfig
    model = GPT(GPTConfig(**{**meta["config"]["model"], "n_embd": 32}))
    shape = r"^f\.safetensors: .*tensor wte\.weight has shape \[\d+, 16\]"
    with pytest.raises(checkpoint.CheckpointError, match=shape):
        checkpoint.load_module(model, tensors, "f.safetensors")


@pytest.mark.parametrize("device,msg", [("tpu", "device 'tpu' is not one genforge runs on"),
                                        ("cuda:banana", "device 'cuda:banana'")])
def test_unknown_device_is_one_line(device, msg, tiny, capsys):
    capsys.readouterr()
    assert main(["sample", str(tiny), "--device", device, "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert msg in err and "train.device" not in err and err.count("\n") == 1


def test_sample_on_cuda_without_cuda_names_the_device_not_train_device(tiny, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["sample", str(tiny), "--device", "cuda", "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda': CUDA is not available" in err and "train.device" not in err


@pytest.fixture
def run_copy(tiny, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(tiny, dst)
    return dst


@pytest.mark.parametrize("write,msg", [
    (lambda c: "[1, 2]", "config.json: holds a JSON list, not an object"),
    (lambda c: '{"config": ', "config.json: not valid JSON"),
    (lambda c: json.dumps({**c, "config": 3}), "`config` is a JSON int"),
    (lambda c: json.dumps(_set(c, ["config", "model", "n_layer"], 3)), "model.n_layer=3 ("),
])
def test_resume_with_a_bad_config_json_is_one_line(write, msg, run_copy, capsys):
    saved = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(write(saved))
    capsys.readouterr()
    assert main(["train", "gpt", "--resume", "--out", str(run_copy), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_resume_into_another_family_says_which_family(run_copy, capsys):
    assert main(["train", "gan", "--resume", "--out", str(run_copy), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is a 'gpt' run, not a 'gan' run" in err and "unknown config key" not in err


def test_resume_removes_the_temporary_files_of_a_killed_checkpoint_write(run_copy, capsys):
    ckpts = run_copy / "checkpoints"
    stale = [ckpts / "last.safetensors.k2j3h4.tmp", ckpts / "best.safetensors.x.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    (ckpts / "notes.tmp").write_text("mine")  # not a name checkpoint.save writes: kept
    assert main(["train", "gpt", "--resume", "--out", str(run_copy), "--train.max_iters=3", "--no-progress"]) == 0
    assert not any(p.exists() for p in stale)
    assert (ckpts / "notes.tmp").read_text() == "mine"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.safetensors", "last.safetensors", "notes.tmp"]


def test_encoder_removes_partial_token_files_of_dead_encoders_only(tmp_path, monkeypatch):
    from genforge.data.text import encode_corpus
    from genforge.data.tokenizers import CharTokenizer
    monkeypatch.setenv("GENFORGE_CACHE", str(tmp_path / "cache"))
    tokens = tmp_path / "cache" / "tokens"
    tokens.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tokens / f"{'a' * 32}.{dead_pid}.tmp"
    alive = tokens / f"{'b' * 32}.{os.getppid()}.tmp"  # a process that is running: maybe still encoding
    other = tokens / "unrelated.999999.tmp"  # not a name the encoder writes
    for p in (stale, alive, other):
        p.write_bytes(b"\1" * 4096)
    (tmp_path / "c.txt").write_text("abcabc\n" * 10)
    encode_corpus(tmp_path / "c.txt", CharTokenizer("abc\n"), progress=False)
    assert not stale.exists() and alive.exists() and other.exists()


def test_resume_with_a_model_override_that_changes_shapes_is_one_line(run_copy, capsys):
    assert main(["train", "gpt", "--resume", "--out", str(run_copy), "--model.n_layer=3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "model.n_layer=3" in err and "was trained with 1" in err and err.count("\n") == 1
