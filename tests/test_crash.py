"""Crash safety: a training run killed with SIGKILL (mid-step, mid-checkpoint-write, right after a
checkpoint) and resumed each time ends exactly where an uninterrupted run ends: identical weights, the
same metrics.jsonl rows with no step missing or repeated, and no temporary file left behind."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]

# the child trains through the Python API; KILL=what:n sends it SIGKILL at the n-th such event
CHILD = r"""
import os, signal, sys
from genforge import checkpoint
from genforge.families import gpt
corpus, out, resume, kill = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
what, n = (kill.split(":") + ["0"])[:2] if kill else ("", "0")
count = {"n": 0}

def tick():
    count["n"] += 1
    if count["n"] == int(n):
        os.kill(os.getpid(), signal.SIGKILL)

if what == "step":
    real_loss = gpt.GPTTask._loss
    def _loss(self):
        tick()
        return real_loss(self)
    gpt.GPTTask._loss = _loss
elif what == "write":  # the temporary file is fully written, the rename has not happened
    real_file = checkpoint.save_file
    def save_file(tensors, path, metadata=None):
        real_file(tensors, path, metadata=metadata)
        tick()
    checkpoint.save_file = save_file
elif what == "saved":  # a checkpoint is in place, nothing after it has run
    real_save = checkpoint.save
    def save(path, tensors, meta):
        out_path = real_save(path, tensors, meta)
        tick()
        return out_path
    checkpoint.save = save
over = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "data": {"path": corpus},
        "train": {"batch_size": 8, "max_iters": 40, "eval_interval": 10, "log_interval": 1, "dtype": "fp32",
                  "warmup_iters": 2, "samples": False}}
gpt.train(overrides=over if not resume else {}, out=out, resume=resume, progress=False)
"""


def run_child(corpus: Path, out: Path, resume: bool, kill: str = "") -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(corpus), str(out), "1" if resume else "0", kill],
                          env=env, capture_output=True, text=True, timeout=300)
    if kill:
        assert proc.returncode == -signal.SIGKILL, (kill, proc.returncode, proc.stderr[-2000:])
    else:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.returncode


def rows(run: Path) -> list[dict]:
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.append({k: v for k, v in rec.items() if "seconds" not in k and not k.endswith("_per_s")})
    return out


def weights(run: Path) -> dict:
    return {k: v for k, v in load_file(run / "checkpoints" / "last.safetensors").items() if k.startswith("module.")}


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400)))
    return p


def test_sigkill_at_several_points_then_resume_equals_an_uninterrupted_run(corpus, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run_child(corpus, full, resume=False)
    run_child(corpus, part, resume=False, kill="step:13")   # mid-step, 3 steps after the first checkpoint
    run_child(corpus, part, resume=True, kill="write:2")    # while writing the step-20 checkpoints
    assert list((part / "checkpoints").glob("*.tmp")), "the kill was meant to leave a temporary file"
    run_child(corpus, part, resume=True, kill="saved:2")    # right after 'last' at step 20 (best, then last)
    run_child(corpus, part, resume=True, kill="step:5")     # mid-step again, after resuming from step 20
    run_child(corpus, part, resume=True)                    # to the end
    a, b = weights(full), weights(part)
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert rows(part) == rows(full)
    train_steps = [r["step"] for r in rows(part) if "train/loss" in r]
    assert train_steps == list(range(1, 41))
    assert [r["step"] for r in rows(part) if "eval/val_loss" in r] == [10, 20, 30, 40]
    assert not list(part.rglob("*.tmp")), list(part.rglob("*.tmp"))
