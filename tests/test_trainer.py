"""The training loop: LR schedules, config checks, and the loop itself on a fake two-phase task (no family):
phases and optimizers, seeding, exact resume, NaN stop, stop request (Ctrl-C), early stopping, stop_at,
time budget, and placement (device, compile)."""
import dataclasses
import json
import time

import pytest
import torch

from genforge import checkpoint
from genforge.errors import TrainingDiverged
from genforge.run import RunDir
from genforge.runtime import make_runtime
from genforge.trainer import TrainConfig, Trainer, lr_multiplier


def test_warmup_then_cosine_to_floor():
    cfg = TrainConfig(max_iters=100, warmup_iters=10, lr=1e-3, min_lr=1e-4)
    assert lr_multiplier(0, cfg) == pytest.approx(1 / 11)
    assert lr_multiplier(9, cfg) == pytest.approx(10 / 11)
    assert lr_multiplier(10, cfg) == pytest.approx(1.0)
    assert lr_multiplier(55, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier(100, cfg) == pytest.approx(0.1)
    mults = [lr_multiplier(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(mults, mults[1:]))


def test_linear_constant_and_time_schedules():
    lin = TrainConfig(max_iters=100, warmup_iters=0, lr=1.0, min_lr=0.0, schedule="linear")
    assert lr_multiplier(50, lin) == pytest.approx(0.5)
    const = TrainConfig(max_iters=100, warmup_iters=0, schedule="constant")
    assert lr_multiplier(99, const) == 1.0
    timed = TrainConfig(max_iters=10**6, warmup_iters=0, lr=1.0, min_lr=0.0, max_seconds=10, time_schedule=True)
    assert lr_multiplier(5, timed, elapsed=5.0) == pytest.approx(0.5)
    assert lr_multiplier(5, timed, elapsed=20.0) == pytest.approx(0.0)


@pytest.mark.parametrize("field,value", [("max_iters", 0), ("batch_size", -1), ("lr", -1.0), ("patience", -2)])
def test_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"train.{field}"):
        TrainConfig(**{field: value}).validate()


def test_time_schedule_needs_budget():
    with pytest.raises(ValueError, match="max_seconds"):
        TrainConfig(time_schedule=True).validate()


# ----------------------------------------------------------------------------- the loop, with a fake task
# Two linear "players" trained in two phases (a, then b) on a fixed regression problem; batches are drawn
# with the trainer's generator; `val` scripts the evaluation metric when a test needs control over it.

X = torch.linspace(-1, 1, 64 * 4).reshape(64, 4)
Y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1


class TwoPhaseTask:
    item_name = "ex"
    items_per_step = 8
    select_metric = "val_loss"

    def __init__(self, val=None, hook=None):
        torch.manual_seed(0)
        self.modules = {"a": torch.nn.Linear(4, 1), "b": torch.nn.Linear(4, 1)}
        self.optimizers = {n: torch.optim.AdamW(m.parameters(), lr=0.05) for n, m in self.modules.items()}
        self.val, self.hook = list(val or []), hook  # hook(task, phase) runs inside each loss function
        self.evals, self.drawn = [], 0

    def bind(self, trainer):
        self.trainer = trainer

    def _loss(self, name):
        if self.hook is not None:
            self.hook(self, name)
        idx = torch.randint(0, len(X), (8,), generator=self.trainer.generator)
        self.drawn += 1
        pred = self.trainer.module(name)(X[idx]).squeeze(1)
        loss = ((pred - Y[idx]) ** 2).mean()
        return loss, {f"{name}_loss": loss.item()}

    def phases(self, step):
        return [(("a",), lambda: self._loss("a")), (("b",), lambda: self._loss("b"))]

    def evaluate(self):
        self.evals.append(self.trainer.step)
        if self.val:
            return {"val_loss": self.val.pop(0)}
        with torch.no_grad():
            return {"val_loss": float(((self.modules["a"](X).squeeze(1) - Y) ** 2).mean())}

    def on_eval(self, step, monitor):
        pass

    def meta(self):
        return {"family": "fake"}

    def rng_state(self):
        return {"drawn": torch.tensor([self.drawn])}

    def set_rng_state(self, state):
        self.drawn = int(state["drawn"][0])


def make(tmp_path, name="run", task=None, **cfg):
    cfg = TrainConfig(**{"max_iters": 12, "eval_interval": 4, "log_interval": 1, "warmup_iters": 0,
                         "schedule": "constant", "lr": 0.05, "min_lr": 0.05, "grad_clip": 0.0, "dtype": "fp32",
                         "device": "cpu", **cfg})
    run = RunDir(tmp_path / name)
    run.create(resume=False)
    return Trainer(task or TwoPhaseTask(), cfg, run, make_runtime("cpu", "fp32"), progress=False)


def logged(trainer, key="train/b_loss"):
    rows = [json.loads(line) for line in trainer.run.file("metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in rows if key in r}


def test_two_phases_each_step_each_with_its_optimizer(tmp_path):
    tr = make(tmp_path)
    before = {n: m.weight.clone() for n, m in tr.task.modules.items()}
    res = tr.fit()
    assert res.stopped == "max_iters" and res.step == 12 and tr.task.drawn == 24
    assert all(not torch.equal(before[n], m.weight) for n, m in tr.task.modules.items())
    assert set(logged(tr)) == set(range(1, 13)) and len(logged(tr, "train/a_loss")) == 12
    assert tr.task.evals == [4, 8, 12] and res.best == min(logged(tr, "eval/val_loss").values())


def test_same_seed_same_batches_other_seed_other_batches(tmp_path):
    a, b, c = make(tmp_path, "a"), make(tmp_path, "b"), make(tmp_path, "c", seed=7)
    for t in (a, b, c):
        t.fit()
    assert logged(a) == logged(b)
    assert logged(a) != logged(c)


def test_resume_is_exact(tmp_path):
    full = make(tmp_path, "full")
    full.fit()
    part = make(tmp_path, "part", max_iters=8)
    assert part.fit().step == 8
    again = Trainer(TwoPhaseTask(), dataclasses.replace(part.cfg, max_iters=12), part.run, part.rt, progress=False)
    again.restore(part.run.checkpoint("last"))
    assert again.step == 8 and again.task.drawn == 16 and again.best == part.best  # task state came back too
    again.fit()
    assert logged(again) == logged(full)
    for n in ("a", "b"):
        assert torch.equal(again.task.modules[n].weight, full.task.modules[n].weight)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(task, phase):
        if task.trainer.step == 6 and phase == "b":
            task.modules["b"].bias.data.fill_(float("nan"))
    tr = make(tmp_path, task=TwoPhaseTask(hook=poison))
    with pytest.raises(TrainingDiverged, match=r"step 6: b loss is nan.*last good checkpoint is .*last.safetensors"):
        tr.fit()
    assert checkpoint.read_meta(tr.run.checkpoint("last"))["step"] == 4


def test_stop_request_finishes_the_step_and_saves(tmp_path):
    def stop(task, phase):
        if task.trainer.step == 5 and phase == "a":
            task.trainer.request_stop()  # what Ctrl-C does
    tr = make(tmp_path, task=TwoPhaseTask(hook=stop))
    res = tr.fit()
    assert res.stopped == "interrupted" and res.step == 6 and tr.task.drawn == 12  # both phases of step 6 ran
    meta = checkpoint.read_meta(tr.run.checkpoint("last"))
    assert meta["step"] == 6 and "resume" in meta


def test_early_stopping_after_patience_evaluations_without_improvement(tmp_path):
    tr = make(tmp_path, task=TwoPhaseTask(val=[1.0, 0.5, 0.7, 0.6, 0.1]), patience=2, max_iters=40)
    res = tr.fit()
    assert res.stopped == "early_stopping" and res.step == 16 and res.best == 0.5
    assert checkpoint.read_meta(tr.run.checkpoint("best"))["step"] == 8


def test_stop_at_target(tmp_path):
    tr = make(tmp_path, task=TwoPhaseTask(val=[3.0, 2.0, 0.9, 0.1]), stop_at=1.0, max_iters=40)
    res = tr.fit()
    assert res.stopped == "target_reached" and res.step == 12 and res.best == 0.9


def test_time_budget_stops_evaluates_and_saves(tmp_path):
    tr = make(tmp_path, task=TwoPhaseTask(hook=lambda task, phase: time.sleep(0.02)), max_iters=10_000,
              eval_interval=1000, max_seconds=0.3)
    res = tr.fit()
    assert res.stopped == "time_budget" and 3 <= res.step < 100
    assert tr.task.evals == [res.step] and checkpoint.read_meta(tr.run.checkpoint("last"))["step"] == res.step
    assert res.metrics["train_seconds"] >= 0.3


def test_the_trainer_places_and_compiles_only_trained_modules(tmp_path, monkeypatch):
    compiled = []

    def fake_compile(module):
        compiled.append(module)
        return torch.nn.Sequential(module)  # a stand-in wrapper that computes the same
    monkeypatch.setattr(torch, "compile", fake_compile)
    task = TwoPhaseTask()
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    task.modules["frozen"] = frozen
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append((self, a)) or self)
    tr = make(tmp_path, task=task, compile=True)
    assert {id(m) for m, _ in moved} == {id(m) for m in task.modules.values()}
    assert all(a == (torch.device("cpu"),) for _, a in moved)
    assert compiled == [task.modules["a"], task.modules["b"]]
    assert isinstance(tr.module("a"), torch.nn.Sequential) and tr.module("frozen") is frozen
    assert tr.fit().step == 12  # the loss functions ran through the wrappers
    plain = make(tmp_path, "plain")
    assert plain.module("a") is plain.task.modules["a"]


def test_loss_plot_is_redrawn_at_most_every_plot_every_seconds_and_finished_on_close(tmp_path, monkeypatch):
    from genforge import monitor as mon
    run = RunDir(tmp_path / "r")
    run.create(resume=False)
    m = mon.Monitor(run, progress=False)
    for step in (1, 2, 3):  # evaluations within PLOT_EVERY of the start: no redraw yet
        m.log(step, {"val_loss": 1.0 / step}, prefix="eval")
        m.plot()
    assert not run.file("loss.png").exists()
    m.close()  # the skipped redraw happens here, with every point
    assert run.file("loss.png").exists()
    monkeypatch.setattr(mon, "PLOT_EVERY", 0.0)
    run.file("loss.png").unlink()
    m2 = mon.Monitor(run, progress=False)
    m2.log(1, {"val_loss": 0.5}, prefix="eval")
    m2.plot()  # PLOT_EVERY 0: drawn at every evaluation
    assert run.file("loss.png").exists()
