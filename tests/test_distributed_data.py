"""Data per rank (genforge/data/shards.py): each micro-batch slot its own stream and share, so N processes
train what one process with N times the accumulation trains.

    pytest tests/test_distributed_data.py -q

The shares themselves and the 1-vs-N draws of each family are checked in one process (a rank of two is
played by a runtime that says rank 1 of 2 and holds no process group); the rest are real 2-process gloo
launches under torchrun with timeouts: the GPT and the GAN against a 1-process run at the same global
batch, the GPT on two "nodes" over the c10d rendezvous, every other family and `genforge cv`.
"""
import dataclasses
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genforge import families
from genforge.cli import main
from genforge.data.shards import Shares
from genforge.data.text import TokenSplit
from genforge.families import base
from genforge.runtime import Runtime
from genforge.trainer import Trainer
from tests.test_distributed import RECORDER, TINY_GPT, TORCHRUN, _env, _rows, _run
from tests.test_families import tiny, write_data

pytestmark = pytest.mark.usefixtures("one_thread")

# ----------------------------------------------------------------------------- the shares


def test_one_slot_draws_windows_as_before_and_slots_read_disjoint_blocks():
    n, block = 1000, 16
    before = torch.randint(n - block, (64,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(Shares(0).window_starts(n, block, 64, torch.Generator().manual_seed(3)), before)
    seen = []
    for slot in range(3):
        starts = Shares(0, 3, slot).window_starts(n, block, 4000, torch.Generator().manual_seed(slot))
        assert int(starts.min()) >= 0 and int(starts.max()) < n - block  # every window inside the split
        blocks = set((starts // block).tolist())
        assert all(b % 3 == slot for b in blocks)  # rank-strided: slot s reads blocks s, s + 3, ...
        seen.append(blocks)
    assert set.union(*seen) == set(range((n - block + block - 1) // block))  # together: every block
    with pytest.raises(ValueError, match=r"no block of 16 tokens for micro-batch share 2 of train.grad_accum=3"):
        Shares(0, 3, 2).window_starts(40, 16, 1, torch.Generator())  # blocks 0 and 1 only


@pytest.mark.parametrize("drop_last,per_epoch", [(True, 2), (False, 3)])
def test_example_shares_split_every_epoch_disjointly(drop_last, per_epoch):
    gen = torch.Generator().manual_seed(0)
    orders = [base.EpochOrder(11, gen, drop_last, Shares(5, 2, s)) for s in range(2)]  # shares of 5 (the 11th waits)
    epochs = []
    for _ in range(2):  # batches of 2: two a share with drop_last, else 2 + 2 + 1
        parts = [torch.cat([o.next(2) for _ in range(per_epoch)]) for o in orders]
        assert not set(parts[0].tolist()) & set(parts[1].tolist())  # disjoint
        assert len(set(torch.cat(parts).tolist())) == (8 if drop_last else 10)
        epochs.append(parts)
    assert not torch.equal(epochs[0][0], epochs[1][0])  # a fresh permutation per epoch, the same on each slot
    assert orders[0].epoch == orders[1].epoch == 1 and torch.equal(orders[0].perm, orders[1].perm)
    with pytest.raises(ValueError, match=r"3 training example\(s\) cannot be split into train.grad_accum=4"):
        base.EpochOrder(3, gen, True, Shares(0, 4, 0))


# ----------------------------------------------------------------------------- 1 vs N draws, in one process


def _train_as(name: str, data: str, out: Path, rank: int, world: int, extra: dict,
              accum: int = 2) -> tuple[list, dict]:
    """Train `name` two steps as rank `rank` of `world` (no process group: the runtime only says so);
    returns every draw (slot, indices or windows) and the first step's losses."""
    family, draws, logs = families.get(name), [], []
    real_next, real_batch = base.EpochOrder.next, TokenSplit.batch

    def order_next(self, size):
        idx = real_next(self, size)
        draws.append((self.shares.slot if self.shares else 0, idx.tolist()))
        return idx

    def batch(self, size, gen, shares=None):
        x, y = real_batch(self, size, gen, shares)
        if shares is not None:  # training draws (evaluation draws none)
            draws.append((shares.slot, x.tolist()))
        return x, y
    make, step = base.make_runtime, Trainer._one_step
    ov = tiny(family, None, data)
    for section, values in extra.items():
        ov.setdefault(section, {}).update(values)
    ov["train"].update(grad_accum=accum, samples=False, dtype="fp32")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(base.EpochOrder, "next", order_next)
        mp.setattr(TokenSplit, "batch", batch)
        mp.setattr(Runtime, "distributed", property(lambda self: False))
        mp.setattr(base, "make_runtime", lambda *a, **k: dataclasses.replace(
            make(*a, **{**k, "distributed": False}), rank=rank, world_size=world))
        mp.setattr(Trainer, "_one_step", lambda self: logs.append(step(self)) or logs[-1])
        family.train(None, ov, out=str(out), progress=False)
    return draws, {k: v for k, v in logs[0].items() if k != "lr" and "grad_norm" not in k}


@pytest.mark.parametrize("name", ["gpt", "gan", "imageclf", "text2image"])
def test_one_process_draws_what_two_ranks_draw(name, tmp_path):
    data = write_data(name, tmp_path)
    extra = {"aug": {"flip": True}} if name == "imageclf" else {}
    if name == "text2image":
        from tests.families.test_text2image import tiny_tokenizer
        extra = {"prior": {"vqvae": tiny_tokenizer(data, tmp_path / "vq"), "caption_dropout": 0.5}}
    one, one_logs = _train_as(name, data, tmp_path / "one", 0, 1, extra)
    ranks = [_train_as(name, data, tmp_path / f"r{r}", r, 2, extra) for r in range(2)]
    assert {s for s, _ in one} == {0, 1} and [s for s, _ in ranks[1][0]] == [1] * len(ranks[1][0])
    for r, (draws, _) in enumerate(ranks):  # slot r of the one process is rank r's micro-batch
        assert [d for s, d in one if s == r] == [d for _, d in draws]
    assert ranks[0][0] != ranks[1][0]
    if name != "gan":  # one phase: the first step's loss is the mean of the ranks' (noise, dropout, augmentation)
        for k, v in one_logs.items():
            assert v == pytest.approx((ranks[0][1][k] + ranks[1][1][k]) / 2, abs=1e-5), k


def test_one_slot_runs_draw_as_before(tmp_path):
    """grad_accum 1 on one process: one slot, the trainer's generator alone (what the recorded-loss tests pin)."""
    draws, _ = _train_as("gan", write_data("gan", tmp_path), tmp_path / "r", 0, 1, {}, accum=1)
    assert {s for s, _ in draws} == {0}
    assert draws[0][1] == torch.randperm(58, generator=torch.Generator().manual_seed(1337))[:8].tolist()  # 58 train images


# ----------------------------------------------------------------------------- 2 processes against 1, under torchrun


def _losses(run: Path) -> dict[int, dict[str, float]]:
    """Per logged step, the training losses (train/... without the rates and norms) and eval/val_loss."""
    out: dict[int, dict[str, float]] = {}
    for row in _rows(run):
        keep = {k: v for k, v in row.items() if ("loss" in k) and "seconds" not in k}
        out.setdefault(row["step"], {}).update(keep)
    return out


def _same_losses(one: Path, two: Path) -> None:
    a, b = _losses(one), _losses(two)
    assert a.keys() == b.keys() and all(a[s].keys() == b[s].keys() for s in a)
    for s in a:
        for k, v in a[s].items():
            assert abs(v - b[s][k]) < 1e-5, (s, k, v, b[s][k])


def _ranks(record: Path) -> list[dict]:
    return [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]


def _gpt_args(corpus: Path, out: Path) -> list[str]:
    return (["train", "gpt", "--data", str(corpus), "--out", str(out), "--train.grad_accum=2", "--train.max_iters=6"]
            + TINY_GPT + ["--train.log_interval=1", "--train.eval_interval=3", "--model.dropout=0.1"])


@pytest.fixture(scope="module")
def gpt_reference(tmp_path_factory) -> tuple[Path, Path]:
    """The corpus and a 1-process GPT run at the global batch of the launches below (4 x 2)."""
    import random
    root = tmp_path_factory.mktemp("reference")
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while cats sit on warm mats".split()
    corpus = root / "corpus.txt"
    corpus.write_text(" ".join(rng.choice(words) for _ in range(4000)))
    assert main(_gpt_args(corpus, root / "one")) == 0
    return corpus, root / "one"


def _launch(tmp_path: Path, cmd: list[str]) -> tuple[subprocess.CompletedProcess, list[dict]]:
    record = tmp_path / "record"
    record.mkdir()
    (tmp_path / "recorder.py").write_text(RECORDER)
    p = _run(TORCHRUN + [str(tmp_path / "recorder.py")] + cmd, _env(tmp_path, RECORD=str(record)), timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    return p, _ranks(record)


def test_gpt_on_two_processes_trains_what_one_process_trains(tmp_path, gpt_reference):
    corpus, one = gpt_reference
    p, (r0, r1) = _launch(tmp_path, _gpt_args(corpus, tmp_path / "two"))
    assert "global batch 8 (4 x 1 x 2 processes)" in p.stderr
    assert r0["weights"] == r1["weights"] and not set(r0["batches"]) & set(r1["batches"])
    _same_losses(one, tmp_path / "two")  # every step's loss and each val_loss, within 1e-5


def test_gan_on_two_processes_trains_what_one_process_trains(tmp_path):
    args = ["train", "gan", "--preset", "mlp", "--data", "", "--model.mlp_hidden=[32,32]", "--model.image_size=8",
            "--train.max_iters=4", "--train.eval_interval=2", "--train.log_interval=1", "--train.batch_size=8",
            "--train.grad_accum=2", "--train.dtype=fp32", "--train.samples=false", "--gan.monitor_samples=0",
            "--gan.n_critic=2", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    _, (r0, r1) = _launch(tmp_path, args + ["--out", str(tmp_path / "two")])
    assert r0["weights"] == r1["weights"]  # G, D and the EMA G
    _same_losses(tmp_path / "one", tmp_path / "two")  # d_loss, g_loss of every step


def test_gpt_on_two_nodes_over_the_c10d_rendezvous(tmp_path, gpt_reference):
    corpus, one = gpt_reference
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    record = tmp_path / "record"
    record.mkdir()
    (tmp_path / "recorder.py").write_text(RECORDER)
    node = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=genforge-two-nodes", str(tmp_path / "recorder.py")]
    env = _env(tmp_path, RECORD=str(record))
    nodes = [subprocess.Popen(node + _gpt_args(corpus, tmp_path / "two"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outs = [n.communicate(timeout=240) for n in nodes]
    finally:
        for n in nodes:
            n.kill()
    assert [n.returncode for n in nodes] == [0, 0], "\n".join(err[-2000:] for _, err in outs)
    r0, r1 = _ranks(record)
    assert r0["weights"] == r1["weights"]
    _same_losses(one, tmp_path / "two")


# every other family trains 2 steps on 2 processes (one launch, run after run: the process group is formed
# and left per run), then `genforge cv`; per rank, each run's step and weights digest
FAMILIES = '''
import hashlib, json, os, sys
import genforge.trainer as trainer
from genforge import families
from genforge.cli import main
from tests.test_families import tiny

data, out = json.loads(sys.argv[1]), sys.argv[2]
done, fit = {}, trainer.Trainer.fit
def fit_and_record(self):
    result = fit(self)
    h = hashlib.sha256()
    for name, m in sorted(self.task.modules.items()):
        for k, v in sorted(m.named_parameters()):
            h.update(v.detach().cpu().numpy().tobytes())
    done[str(self.run.path)] = [result.step, h.hexdigest()]
    return result
trainer.Trainer.fit = fit_and_record

def train(name, **extra):
    family = families.get(name)
    ov = tiny(family, None, data[name])
    for section, values in extra.items():
        ov.setdefault(section, {}).update(values)
    ov["train"].update(grad_accum=2, dtype="fp32", samples=False)
    return family.train(None, ov, out=os.path.join(out, name), progress=False)[0]

vq = train("vqvae", model={"image_size": 12})
train("text2image", prior={"vqvae": str(vq.path)})
train("captiongan")
train("imageclf")
code = main(["cv", "--data", data["classifier"], "--preset", "nbbag", "--folds", "2", "--out", os.path.join(out, "cv"),
             "--data.buckets=4096", "--train.batch_size=16", "--fit.epochs=1", "--train.grad_accum=2", "--no-progress"])
with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
    json.dump({"runs": done, "cv": code}, f)
'''


def test_every_family_and_cv_train_on_two_processes(tmp_path):
    import genforge
    data = {}
    for name in ("vqvae", "text2image", "captiongan", "imageclf", "classifier"):
        (tmp_path / name).mkdir()
        data[name] = write_data(name, tmp_path / name)
    (tmp_path / "families.py").write_text(FAMILIES)
    out = tmp_path / "runs"
    p = _run(TORCHRUN + [str(tmp_path / "families.py"), json.dumps(data), str(out)], _env(tmp_path), timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1 and r0["cv"] == 0  # every run: the same step and weights on both ranks
    runs = {Path(k).name for k in r0["runs"]}
    assert {"vqvae", "text2image", "captiongan", "imageclf", "fold1", "fold2"} <= runs
    assert all(step == 2 for step, _ in r0["runs"].values())
    for name in ("vqvae", "text2image", "captiongan", "imageclf"):
        assert genforge.load(out / name, device="cpu").family == name  # rank 0 wrote it, whole
    assert p.stdout.count("2-fold cross-validation") == 1 and (out / "cv" / "cv.json").is_file()
    assert p.stderr.count("genforge: fold 1/2") == 1  # rank 0 reports
