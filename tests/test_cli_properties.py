"""Property-based: generated argument values for the main subcommands end in exit code 0, or 2 with one
line "genforge: error: ..." (or argparse's usage error), never a traceback.

Every command line here fails or finishes fast: training reads a missing data file (after the config
and device are checked), serving names a missing run, sampling makes at most a few tokens.
"""
import contextlib
import io
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from genforge.cli import main
from genforge.families import gpt

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
odd = st.sampled_from(["", "nan", "inf", "-1", "0", "1e400", "²", "9" * 5000, "1,abc", "tpu", "cuda:9", "=", "--",
                       "你", "None", "true", "0x10", " 3 "])
values = odd | st.integers(-(2**70), 2**70).map(str) | st.floats().map(str) | st.text(max_size=8).filter(
    lambda s: not s.startswith("-"))


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    return code, err.getvalue()


def check(code, err: str):
    assert "Traceback" not in err
    if code == 0:
        return
    assert code == 2, (code, err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    ours = [ln for ln in lines if ln.startswith("genforge: error: ")]
    usage = lines and lines[0].startswith("usage: genforge") and ": error: " in lines[-1]
    assert (len(ours) == 1 and lines[-1] == ours[0]) or usage, err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cliprop")
    (root / "c.txt").write_text("hello world, the quick brown fox.\n" * 200)
    ov = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
          "train": {"batch_size": 4, "max_iters": 1, "eval_interval": 1, "dtype": "fp32", "samples": False,
                    "device": "cpu", "warmup_iters": 0}, "data": {"path": str(root / "c.txt")}}
    run_, _ = gpt.train(overrides=ov, out=root / "run", progress=False)
    return run_.path


TRAIN_KEYS = ["train.lr", "train.max_iters", "train.batch_size", "train.device", "train.dtype", "train.seed",
              "train.dropout", "model.n_layer", "model.n_head", "model.dropout", "data.val_fraction", "nope.key"]


@SETTINGS
@given(family=st.sampled_from(["gpt", "gan", "classifier"]) | values,
       overrides=st.lists(st.tuples(st.sampled_from(TRAIN_KEYS), values), max_size=3),
       seed=st.none() | values, preset=st.none() | st.sampled_from(["small", "dcgan", "bag"]) | values)
@example(family="gpt", overrides=[("train.lr", "nan")], seed=None, preset=None)
@example(family="gpt", overrides=[("train.device", "tpu")], seed=None, preset=None)
def test_train_arguments(tmp_path, family, overrides, seed, preset):
    argv = ["train", family, "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "r"), "--no-progress"]
    argv += [f"--{k}={v}" for k, v in overrides]
    argv += [] if seed is None else [f"--seed={seed}"]
    argv += [] if preset is None else [f"--preset={preset}"]
    check(*run(argv))


SAMPLE_FLAGS = ["--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed", "--num-samples", "--device",
                "--threads", "--prompt"]


@SETTINGS
@given(flags=st.lists(st.tuples(st.sampled_from(SAMPLE_FLAGS), values), max_size=4))
@example(flags=[("--device", "tpu")])
def test_sample_arguments(tiny, flags):
    flags = dict(flags)
    flags.setdefault("--max-new-tokens", "2")
    for name, most in (("--max-new-tokens", 3), ("--num-samples", 2), ("--threads", 1)):  # keep it short
        if re.fullmatch(r"\s*\+?[0-9_]+\s*", flags.get(name, "x")) and int(flags[name]) > most:
            flags[name] = str(most)
    argv = ["sample", str(tiny)] + [f"{k}={v}" for k, v in flags.items()]
    check(*run(argv))


SERVE_FLAGS = ["--port", "--api-key", "--device", "--max-batch", "--max-queue", "--queue-timeout",
               "--request-timeout", "--max-tokens-limit", "--threads", "--host"]


@SETTINGS
@given(flags=st.lists(st.tuples(st.sampled_from(SERVE_FLAGS), values), max_size=4),
       name=st.none() | values)
@example(flags=[("--api-key", "")], name=None)
def test_serve_arguments(tmp_path, flags, name):
    target = str(tmp_path / "no-run")
    argv = ["serve", target if name is None else f"{name}={target}"] + [f"{k}={v}" for k, v in flags]
    check(*run(argv))


@SETTINGS
@given(flags=st.lists(st.tuples(st.sampled_from(["--n", "--seed", "--device", "--feature-steps", "--data",
                                                  "--errors", "--text-field"]), values), max_size=3))
def test_eval_arguments(tiny, tmp_path, flags):
    flags = dict(flags)
    if flags.get("--data") not in (None,):
        flags["--data"] = str(tmp_path / "missing.txt")  # never evaluate a real file here
    check(*run(["eval", str(tiny)] + [f"{k}={v}" for k, v in flags.items()]))


@SETTINGS
@given(weights=values, runs=st.lists(values.filter(lambda s: s.strip() and "/" not in s), min_size=0, max_size=3))
@example(weights="1,abc", runs=["a", "b"])
def test_ensemble_and_classify_arguments(tmp_path, weights, runs):
    paths = [str(tmp_path / r) for r in runs] or [str(tmp_path / "x")]
    check(*run(["ensemble", *paths, "--out", str(tmp_path / "e"), f"--weights={weights}"]))
    check(*run(["classify", str(tmp_path / "no-run"), *runs, "--device", weights]))
