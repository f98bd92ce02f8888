"""FSDP2, resume across runs and world sizes, and the CUDA decisions, on the CPU (2 gloo processes).

    pytest tests/test_fsdp.py -q

Every multi-process run is a real torchrun launch with a timeout (a hang fails, never stalls). One
2-process DDP run of 20 steps is the reference: a run stopped at step 10 and resumed, under DDP or
FSDP, must log the same training losses (the schedule is constant, so stopping at 10 changes nothing).
No GPU here: the CUDA paths are checked through their decision functions and the GradScaler's step
path on the CPU, never on a device.
"""
import json
import shutil
from types import SimpleNamespace

import pytest
import torch

import genforge
from genforge import checkpoint, fsdp
from genforge.cli import main
from genforge.errors import TrainingDiverged
from genforge.run import RunDir
from genforge.runtime import Runtime, pick_dtype
from genforge.trainer import TrainConfig, Trainer
from tests.test_distributed import TORCHRUN, _env, _no_duplicates, _rows, _run
from tests.test_trainer import TwoPhaseTask

GPT = ["--model.n_layer=2", "--model.n_embd=32", "--model.n_head=2", "--model.block_size=32",
       "--train.batch_size=4", "--train.grad_accum=2", "--train.dtype=fp32", "--train.samples=false",
       "--train.log_interval=5", "--train.eval_interval=5", "--train.schedule=constant", "--train.warmup_iters=0",
       "--no-progress"]


def _losses(run) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in _rows(run) if "train/loss" in r}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """(folder, corpus, train command, env, the reference run: DDP on 2 processes, 20 steps)."""
    import random
    tmp = tmp_path_factory.mktemp("fsdp")
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while cats sit on warm mats".split()
    corpus = tmp / "corpus.txt"
    corpus.write_text(" ".join(rng.choice(words) for _ in range(4000)))
    train = ["-m", "genforge", "train", "gpt", "--data", str(corpus)] + GPT  # [2:]: main()'s arguments
    env = _env(tmp)
    ref = tmp / "ref"
    p = _run(TORCHRUN + train + ["--out", str(ref), "--train.max_iters=20"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    return tmp, train, env, ref


def test_fsdp_resume_continues_the_uninterrupted_run_and_samples_on_one_cpu(base, capsys):
    tmp, train, env, ref = base
    run = tmp / "fsdp"
    for steps, extra in ((10, []), (20, ["--resume"])):
        p = _run(TORCHRUN + train + ["--out", str(run), f"--train.max_iters={steps}", "--train.distributed=fsdp"]
                 + extra, env)
        assert p.returncode == 0, p.stderr[-3000:]
    _no_duplicates(_rows(run))
    want, got = _losses(ref), _losses(run)
    assert sorted(got) == [5, 10, 15, 20]
    assert all(abs(got[s] - want[s]) < 1e-5 for s in want), (got, want)  # FSDP = DDP, through the resume
    shards = run / "checkpoints" / "last.shards"
    assert [p.name for p in shards.iterdir()] == ["step0000020"]  # the older step's folder pruned
    assert sorted(p.name for p in (shards / "step0000020").iterdir()) == [
        "param_groups.json", "shard-00001-model-00001-of-00001.safetensors",
        "shard-00002-model-00001-of-00001.safetensors"]  # one safetensors shard per rank, no pickle
    # the gathered checkpoint is the whole model: the same weights as the DDP run's
    a, _ = checkpoint.load(run / "checkpoints" / "last.safetensors", prefix="module.model")
    b, _ = checkpoint.load(ref / "checkpoints" / "last.safetensors", prefix="module.model")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "the ", "--max-new-tokens", "8", "--seed", "0"]) == 0  # one process
    out = capsys.readouterr().out
    assert out.startswith("the ") and len(out.strip()) >= 8
    # the sharded optimizer state cannot be resumed without FSDP: a one-line error naming the flag
    assert main(train[2:] + ["--out", str(run), "--resume", "--train.max_iters=25"]) != 0
    assert "trained with --train.distributed=fsdp" in capsys.readouterr().err


def test_ddp_resume_is_exact_on_the_same_world_size_and_runs_on_another(base):
    tmp, train, env, ref = base
    run, moved = tmp / "ddp", tmp / "moved"
    p = _run(TORCHRUN + train + ["--out", str(run), "--train.max_iters=10"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    shutil.copytree(run, moved)
    p = _run(TORCHRUN + train + ["--out", str(run), "--resume", "--train.max_iters=20"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert _losses(run) == _losses(ref)  # rank 1's data and dropout streams were saved and continued too
    # 2 processes -> 1: weights, optimizer and step continue; the data is rank 0's stream alone
    assert main(train[2:] + ["--out", str(moved), "--resume", "--train.max_iters=20"]) == 0
    got = _losses(moved)
    assert sorted(got) == [5, 10, 15, 20] and got[10] == _losses(ref)[10] and got[20] < got[5]
    # 1 process -> 2: rank 1, which the one-process run did not have, starts a fresh stream
    p = _run(TORCHRUN + train + ["--out", str(moved), "--resume", "--train.max_iters=25"], env)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = _rows(moved)
    _no_duplicates(rows)
    assert [r["step"] for r in rows if "eval/val_loss" in r] == [5, 10, 15, 20, 25]
    assert genforge.load(moved, device="cpu").meta["step"] == 25


def test_what_fsdp_cannot_shard_is_a_one_line_error(tmp_path):
    run = RunDir(tmp_path / "r")
    rt = Runtime(torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="--train.distributed=fsdp: the fake family cannot be sharded"):
        Trainer(TwoPhaseTask(), TrainConfig(distributed="fsdp"), run, rt, progress=False)
    muon = SimpleNamespace(shardable=True, optimizers={"adamw": None, "muon": None})
    with pytest.raises(ValueError, match="--train.distributed=fsdp does not run with --train.optimizer=muon"):
        fsdp.check(muon)


# ----------------------------------------------------------------------------- the CUDA decisions, on the CPU

def test_precision_and_scaler_follow_the_device():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert pick_dtype("auto", cuda, cuda_bf16=True) == torch.bfloat16  # Ampere and later
    assert pick_dtype("auto", cuda, cuda_bf16=False) == torch.float16  # older GPUs: fp16, with a scaler
    assert Runtime(cuda, torch.float16).needs_scaler
    assert not Runtime(cuda, torch.bfloat16).needs_scaler and not Runtime(cpu, torch.float32).needs_scaler
    with pytest.raises(ValueError, match="train.dtype=fp16 needs a GPU"):
        pick_dtype("fp16", cpu)
    t = torch.arange(4)
    assert Runtime(cpu, torch.float32).to_device(t) is t  # the CPU: no pinned copy


class ScaledRuntime(Runtime):
    """The CPU with the GradScaler on (torch runs it there), as fp16 on a GPU would have it."""
    needs_scaler = True


def _poisoned(step: int):
    """A task hook: at `step`, player a's weight gradient becomes inf (its loss stays finite)."""
    def hook(task, name):
        if task.trainer.step == step and name == "a":
            w = task.modules["a"].weight
            task.before = w.detach().clone()
            handle = w.register_hook(lambda g: (handle.remove(), g * float("inf"))[1])
    return hook


def test_an_overflowing_fp16_step_is_skipped_by_the_scaler_not_fatal(tmp_path):
    cfg = TrainConfig(max_iters=4, eval_interval=4, log_interval=1, warmup_iters=0, schedule="constant",
                      lr=0.05, grad_clip=1.0, dtype="fp32", device="cpu")
    run = RunDir(tmp_path / "scaled")
    run.create(resume=False)
    task = TwoPhaseTask(hook=_poisoned(3))
    trainer = Trainer(task, cfg, run, ScaledRuntime(torch.device("cpu"), torch.float32), progress=False)
    b_before = task.modules["b"].weight.detach().clone()
    trainer.fit()
    assert torch.equal(task.modules["a"].weight, task.before)  # the overflowing step of a: skipped
    assert not torch.equal(task.modules["b"].weight, b_before)  # b's finite gradients stepped
    assert trainer.scaler.get_scale() == 2.0 ** 15  # backed off from 2**16 once
    meta = checkpoint.read_meta(run.checkpoint("last"))
    assert meta["resume"]["scaler"]["scale"] == 2.0 ** 15  # saved for resume
    # without the scaler (fp32, bf16), the same gradient is a divergence, reported
    run = RunDir(tmp_path / "plain")
    run.create(resume=False)
    trainer = Trainer(TwoPhaseTask(hook=_poisoned(3)), cfg, run, Runtime(torch.device("cpu"), torch.float32),
                      progress=False)
    with pytest.raises(TrainingDiverged, match="a gradient norm is inf"):
        trainer.fit()
    assert json.loads(run.file("metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
