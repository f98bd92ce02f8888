"""Multi-process training on the CPU: 2 gloo processes under PyTorch's own launcher (torchrun).

    pytest tests/test_distributed.py -q

Each run is a real `python -m torch.distributed.run --standalone --nproc-per-node=2` launch with a
timeout, so a hang fails the test instead of stalling the suite. The GPT run goes through a small
wrapper (the same `genforge.cli.main` that `-m genforge` runs) that records, per rank, a digest of
every batch drawn (GPT) and of the final weights.
"""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
TINY_GPT = ["--model.n_layer=1", "--model.n_embd=32", "--model.n_head=2", "--model.block_size=32",
            "--train.batch_size=4", "--train.dtype=fp32", "--train.samples=false", "--train.log_interval=5",
            "--train.eval_interval=5", "--no-progress"]

# per rank: the digest of each training batch and of the final weights, in RECORD/rank{RANK}.json
RECORDER = '''
import hashlib, json, os, sys
import genforge.data.text as text
import genforge.trainer as trainer
from genforge.cli import main

rank, seen = os.environ["RANK"], []
batch = text.TokenSplit.batch
def recorded(self, *a, **kw):
    x, y = batch(self, *a, **kw)
    seen.append(hashlib.sha256(x.numpy().tobytes()).hexdigest())
    return x, y
text.TokenSplit.batch = recorded
fit = trainer.Trainer.fit
def fit_and_record(self):
    result = fit(self)
    h = hashlib.sha256()
    for name, m in sorted(self.task.modules.items()):
        for k, v in sorted(m.named_parameters()):  # BatchNorm statistics stay per rank (rank 0's are saved)
            h.update(v.detach().cpu().numpy().tobytes())
    with open(os.path.join(os.environ["RECORD"], f"rank{rank}.json"), "w") as f:
        json.dump({"batches": seen, "weights": h.hexdigest()}, f)
    return result
trainer.Trainer.fit = fit_and_record
raise SystemExit(main(sys.argv[1:]))
'''


def _env(tmp_path: Path, **extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GENFORGE_CACHE": str(tmp_path / "cache"),
           "GENFORGE_DIST_TIMEOUT": "60", **extra}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in extra:
            env.pop(name, None)
    return env


def _run(cmd: list[str], env: dict, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _no_duplicates(rows: list[dict]) -> None:
    keys = [(r["step"], tuple(sorted(k.split("/")[0] for k in r if k != "step"))) for r in rows]
    assert len(keys) == len(set(keys)), f"duplicate metrics rows: {keys}"


@pytest.fixture()
def corpus(tmp_path) -> Path:
    import random
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while cats sit on warm mats".split()
    p = tmp_path / "corpus.txt"
    p.write_text(" ".join(rng.choice(words) for _ in range(4000)))
    return p


def test_gpt_two_processes_then_resume(tmp_path, corpus):
    import genforge
    record = tmp_path / "record"
    record.mkdir()
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    run = tmp_path / "run"
    env = _env(tmp_path, RECORD=str(record))
    args = ["train", "gpt", "--data", str(corpus), "--out", str(run), "--train.grad_accum=2"] + TINY_GPT
    p = _run(TORCHRUN + [str(script)] + args + ["--train.max_iters=10"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "global batch 8 (4 x 1 x 2 processes)" in p.stderr
    assert p.stdout.count("genforge: stopped (max_iters) at step 10") == 1  # rank 0 reports, once
    r0, r1 = (json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(r0["batches"]) == len(r1["batches"]) == 10  # grad_accum 2 over 2 ranks: 1 micro-step each
    assert not set(r0["batches"]) & set(r1["batches"])  # each rank its own batches
    assert r0["weights"] == r1["weights"]  # gradients averaged: the same model on both ranks
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("run")) == ["run"]

    # resume under torchrun: every rank loads rank 0's checkpoint and goes on to step 20
    p = _run(TORCHRUN + ["-m", "genforge"] + args + ["--resume", "--train.max_iters=20"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = _rows(run)
    _no_duplicates(rows)
    assert [r["step"] for r in rows if "eval/val_loss" in r] == [5, 10, 15, 20]
    assert all(r["eval/val_loss"] < 10 for r in rows if "eval/val_loss" in r)
    pipe = genforge.load(run, device="cpu")  # one process reads what rank 0 wrote
    assert pipe.meta["step"] in (15, 20) and isinstance(pipe.generate("the ", 5, seed=0), str)


def test_gan_two_processes(tmp_path):
    import genforge
    run = tmp_path / "gan"
    record = tmp_path / "record"
    record.mkdir()
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    cmd = TORCHRUN + [str(script), "train", "gan", "--preset", "mlp", "--data", "", "--out", str(run),
                      "--model.mlp_hidden=[32,32]", "--model.image_size=8", "--train.max_iters=8",
                      "--train.eval_interval=4", "--train.log_interval=2", "--train.batch_size=8",
                      "--train.grad_accum=2", "--train.dtype=fp32", "--train.samples=false",
                      "--gan.monitor_samples=0", "--no-progress"]
    p = _run(cmd, _env(tmp_path, RECORD=str(record)))
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = (json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["weights"] == r1["weights"]  # G, D and the EMA G: the same on both ranks
    rows = _rows(run)
    _no_duplicates(rows)
    assert [r["step"] for r in rows if "eval/train_g_loss" in r] == [4, 8]
    images = genforge.load(run, device="cpu").generate(4, seed=0)
    assert images.shape == (4, 8, 8, 1)


def test_classifier_two_processes(tmp_path, reviews):
    run = tmp_path / "cls"
    cmd = TORCHRUN + ["-m", "genforge", "train", "classifier", "--data", str(reviews), "--preset", "nbbag",
                      "--out", str(run), "--data.buckets=4096", "--train.batch_size=16", "--fit.epochs=2",
                      "--train.grad_accum=2", "--no-progress"]
    p = _run(cmd, _env(tmp_path))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "global batch 32 (16 x 1 x 2 processes)" in p.stderr
    rows = _rows(run)
    _no_duplicates(rows)
    assert any("eval/val_accuracy" in r for r in rows) and (run / "eval" / "val").is_dir()


def test_time_budget_and_nan_stop_every_rank_at_the_same_step(tmp_path, corpus):
    base = TORCHRUN + ["-m", "genforge", "train", "gpt", "--data", str(corpus), "--train.grad_accum=2"] + TINY_GPT
    # each rank's clock differs; rank 0's budget decision is everyone's, so no rank waits for the others
    p = _run(base + ["--out", str(tmp_path / "t"), "--train.max_iters=1000000", "--train.max_seconds=1",
                     "--train.eval_interval=1000000"], _env(tmp_path), timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "genforge: stopped (time_budget)" in p.stdout
    # a loss that turns NaN: both ranks stop at the same step, with the same one-line error
    p = _run(base + ["--out", str(tmp_path / "n"), "--train.max_iters=50", "--train.lr=1e4",
                     "--train.warmup_iters=0", "--train.grad_clip=0"], _env(tmp_path), timeout=60)
    assert p.returncode != 0
    # the ranks write at once: count the messages themselves, not the lines they happen to share
    errors = re.findall(r"genforge: error: training diverged at step \d+", p.stderr)
    assert len(errors) == 2 and errors[0] == errors[1], p.stderr[-3000:]


def test_invalid_config_is_an_error_not_a_hang(tmp_path, corpus):
    cmd = TORCHRUN + ["-m", "genforge", "train", "gpt", "--data", str(corpus), "--out", str(tmp_path / "r"),
                      "--train.grad_accum=3", "--train.max_iters=5"] + TINY_GPT
    p = _run(cmd, _env(tmp_path), timeout=60)
    assert p.returncode != 0
    assert "train.grad_accum=3 is not divisible by the world size 2" in p.stderr
    assert "--train.grad_accum=2" in p.stderr  # the fix, named


DIES = '''
import os, sys
import genforge.trainer as trainer
from genforge.cli import main
one_step = trainer.Trainer._one_step
def dying(self):
    if os.environ["RANK"] == "1" and self.step == 3:
        os._exit(7)  # rank 1 dies mid-run, without a word
    return one_step(self)
trainer.Trainer._one_step = dying
raise SystemExit(main(sys.argv[1:]))
'''


def test_a_rank_that_dies_is_reported_and_the_last_checkpoint_stays(tmp_path, corpus):
    import genforge
    script = tmp_path / "dies.py"
    script.write_text(DIES)
    run = tmp_path / "r"
    cmd = TORCHRUN + [str(script), "train", "gpt", "--data", str(corpus), "--out", str(run), "--train.grad_accum=2",
                      "--train.max_iters=10"] + TINY_GPT + ["--train.eval_interval=2"]
    p = _run(cmd, _env(tmp_path), timeout=60)
    assert p.returncode != 0
    cause = p.stderr[p.stderr.index("Root Cause"):]
    assert "rank      : 1" in cause and "exitcode  : 7" in cause  # torchrun names the rank that died
    assert genforge.load(run, device="cpu").meta["step"] == 2  # the checkpoint before the death, whole


def test_configs_that_differ_across_ranks_are_an_error(tmp_path, corpus):
    script = tmp_path / "differs.py"  # rank 1 gets one more flag than rank 0
    script.write_text("import os, sys\nfrom genforge.cli import main\n"
                      "extra = ['--train.lr=0.5'] if os.environ['RANK'] == '1' else []\n"
                      "raise SystemExit(main(sys.argv[1:] + extra))\n")
    cmd = TORCHRUN + [str(script), "train", "gpt", "--data", str(corpus), "--out", str(tmp_path / "r"),
                      "--train.grad_accum=2", "--train.max_iters=5"] + TINY_GPT
    p = _run(cmd, _env(tmp_path), timeout=60)
    assert p.returncode != 0
    assert "the training config differs between rank 0 and rank(s) 1" in p.stderr
    assert not (tmp_path / "r").exists()


def test_rendezvous_that_never_completes_names_the_timeout(tmp_path, corpus):
    with socket.socket() as s:  # a free port; the second rank never comes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(tmp_path, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(port), GENFORGE_DIST_TIMEOUT="3")
    cmd = [sys.executable, "-m", "genforge", "train", "gpt", "--data", str(corpus), "--out", str(tmp_path / "r"),
           "--train.max_iters=5", "--train.grad_accum=2"] + TINY_GPT
    p = _run(cmd, env, timeout=60)
    assert p.returncode == 2, p.stderr[-3000:]
    assert "did not form within GENFORGE_DIST_TIMEOUT=3s" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "r").exists()  # nothing written before the group formed


def test_grad_accum_split_rule():
    from genforge.trainer import micro_steps
    assert micro_steps(8, 1) == 8 and micro_steps(8, 2) == 4 and micro_steps(8, 8) == 1
    with pytest.raises(ValueError, match=r"train.grad_accum=1 is not divisible by the world size 2"):
        micro_steps(1, 2)
