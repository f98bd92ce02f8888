import dataclasses
import json
import os
import signal

import pytest
import torch

import genforge
from genforge import config
from genforge.errors import TrainingDiverged
from genforge.families import gpt
from genforge.models.gpt import GPT

TINY = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
        "train": {"batch_size": 8, "max_iters": 20, "eval_interval": 10, "log_interval": 1, "dtype": "fp32",
                  "warmup_iters": 2, "samples": False}}


def overrides(corpus, **train):
    ov = {k: dict(v) for k, v in TINY.items()}
    ov["data"] = {"path": str(corpus)}
    ov["train"].update(train)
    return ov


def losses(run):
    rows = [json.loads(line) for line in run.file("metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["train/loss"] for r in rows if "train/loss" in r}


def test_same_seed_same_losses(corpus, tmp_path):
    a, _ = gpt.train(overrides=overrides(corpus), out=tmp_path / "a", progress=False)
    b, _ = gpt.train(overrides=overrides(corpus), out=tmp_path / "b", progress=False)
    c, _ = gpt.train(overrides=overrides(corpus, seed=7), out=tmp_path / "c", progress=False)
    assert losses(a) == losses(b)
    assert losses(a) != losses(c)
    assert len(losses(a)) == 20


def test_resume_equals_uninterrupted(corpus, tmp_path):
    ov = overrides(corpus, schedule="constant")
    full, _ = gpt.train(overrides=ov, out=tmp_path / "full", progress=False)
    ov_half = overrides(corpus, schedule="constant", max_iters=10)
    part, res = gpt.train(overrides=ov_half, out=tmp_path / "part", progress=False)
    assert res.step == 10
    with pytest.raises(FileExistsError, match="--resume"):
        gpt.train(overrides=ov_half, out=tmp_path / "part", progress=False)
    gpt.train(overrides={"train": {"max_iters": 20}}, out=tmp_path / "part", resume=True, progress=False)
    assert losses(full) == losses(part)
    x = torch.randint(0, 10, (1, 16))
    m1, m2 = genforge.load(tmp_path / "full").model, genforge.load(tmp_path / "part").model
    assert torch.equal(m1(x)[0], m2(x)[0])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = gpt.GPTTask._loss

    def poisoned(self):
        calls["n"] += 1
        loss, logs = real(self)
        return (loss * float("nan"), logs) if calls["n"] > 12 else (loss, logs)
    monkeypatch.setattr(gpt.GPTTask, "_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 12.*last good checkpoint.*last.safetensors"):
        gpt.train(overrides=overrides(corpus), out=tmp_path / "r", progress=False)
    meta = genforge.checkpoint.read_meta(tmp_path / "r" / "checkpoints" / "last.safetensors")
    assert meta["step"] == 10


def test_ctrl_c_saves_and_exits_cleanly(corpus, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = gpt.GPTTask._loss

    def interrupt(self):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self)
    monkeypatch.setattr(gpt.GPTTask, "_loss", interrupt)
    run, res = gpt.train(overrides=overrides(corpus), out=tmp_path / "r", progress=False)
    assert res.stopped == "interrupted" and res.step == 5
    meta = genforge.checkpoint.read_meta(run.checkpoint("last"))
    assert meta["step"] == 5


def rows(run):
    """metrics.jsonl without the timing fields (which differ between any two runs)."""
    out = []
    for line in run.file("metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out.append({k: v for k, v in rec.items() if "seconds" not in k and not k.endswith("_per_s")})
    return out


def test_ctrl_c_then_resume_logs_exactly_the_uninterrupted_rows(corpus, tmp_path, monkeypatch):
    """The losses behind the next train_loss are saved with 'last', and the rows logged after the checkpoint
    a run resumes from are dropped (they are logged again), so the curve is the uninterrupted one."""
    ov = overrides(corpus, schedule="constant")
    full, _ = gpt.train(overrides=ov, out=tmp_path / "full", progress=False)
    calls = {"n": 0}
    real = gpt.GPTTask._loss

    def interrupt(self):
        calls["n"] += 1
        if calls["n"] == 15:  # between evaluations (every 10 steps)
            os.kill(os.getpid(), signal.SIGINT)
        return real(self)
    monkeypatch.setattr(gpt.GPTTask, "_loss", interrupt)
    part, res = gpt.train(overrides=ov, out=tmp_path / "part", progress=False)
    assert res.stopped == "interrupted" and res.step == 15
    monkeypatch.setattr(gpt.GPTTask, "_loss", real)
    with open(part.file("metrics.jsonl"), "a") as f:  # as if the process died after logging step 16
        f.write(json.dumps({"step": 16, "train/loss": 99.0}) + "\n")
    gpt.train(overrides={"train": {"max_iters": 20}}, out=tmp_path / "part", resume=True, progress=False)
    assert rows(part) == rows(full)
    steps = [r["step"] for r in rows(part) if "train/loss" in r]
    assert steps == sorted(set(steps)) == list(range(1, 21))


def test_eval_row_is_logged_before_the_checkpoints(corpus, tmp_path, monkeypatch):
    """A crash right after writing 'last' must not lose the evaluation's row."""
    from genforge import trainer as trainer_mod
    seen = []
    real = trainer_mod.Trainer.save

    def save(self, which):
        text = self.run.file("metrics.jsonl").read_text()
        seen.append((which, self.step, f'"step": {self.step}, "eval/' in text))
        return real(self, which)
    monkeypatch.setattr(trainer_mod.Trainer, "save", save)
    gpt.train(overrides=overrides(corpus), out=tmp_path / "r", progress=False)
    assert seen and all(logged for _, _, logged in seen), seen


def test_early_stopping(corpus, tmp_path):
    ov = overrides(corpus, max_iters=200, eval_interval=2, patience=1, lr=0.5, warmup_iters=0, grad_clip=0.0)
    _, res = gpt.train(overrides=ov, out=tmp_path / "r", progress=False)
    assert res.stopped == "early_stopping" and res.step < 200


def test_finetune_from_run_keeps_tokenizer_and_architecture(corpus, tmp_path):
    base, _ = gpt.train(overrides=overrides(corpus), out=tmp_path / "base", progress=False)
    other = tmp_path / "other.txt"
    other.write_text("Speak, speak. All: resolved, resolved.\n" * 50)
    ov = overrides(other)
    ov.pop("model")
    ft, res = gpt.train(overrides=ov, out=tmp_path / "ft", init_from=str(base.path), progress=False)
    assert res.step == 20
    assert ft.read_json("tokenizer.json") == base.read_json("tokenizer.json")
    with pytest.raises(ValueError, match="model.n_layer cannot change"):
        gpt.train(overrides={**ov, "model": {"n_layer": 3}}, out=tmp_path / "ft2", init_from=str(base.path),
                  progress=False)


def test_pipeline_generate_and_evaluate(corpus, tmp_path):
    gpt.train(overrides=overrides(corpus), out=tmp_path / "r", progress=False)
    model = genforge.load(tmp_path / "r")
    a = model.generate("First", max_new_tokens=30, seed=1)
    b = model.generate("First", max_new_tokens=30, seed=1)
    assert a == b and a.startswith("First") and len(a) == 35
    many = model.generate("First", max_new_tokens=10, num_samples=3, seed=2)
    assert len(many) == 3
    with pytest.raises(ValueError, match="not in this model"):
        model.generate("Ω", max_new_tokens=5)
    m = model.evaluate(str(corpus))
    assert m["perplexity"] == pytest.approx(torch.tensor(m["loss"]).exp().item(), rel=1e-6)
    assert m["bits_per_char"] == pytest.approx(m["loss"] / 0.6931471805599453, rel=1e-3)


def test_bpe_and_jsonl(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text("\n".join(json.dumps({"text": f"document number {i} says hello 你好"}) for i in range(200)))
    ov = overrides(p)
    ov["data"].update(tokenizer="bpe", vocab_size=300)
    run, res = gpt.train(overrides=ov, out=tmp_path / "r", progress=False)
    assert res.step == 20
    out = genforge.load(run.path).generate("document", max_new_tokens=5, seed=0)
    assert out.startswith("document")


def test_corpus_shorter_than_context(tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("tiny corpus\n")
    with pytest.raises(ValueError, match="context length"):
        gpt.train(overrides=overrides(p), out=tmp_path / "r", progress=False)


def test_stop_at_target(corpus, tmp_path):
    _, res = gpt.train(overrides=overrides(corpus, max_iters=200, eval_interval=5, stop_at=2.9), out=tmp_path / "r",
                       progress=False)
    assert res.stopped == "target_reached" and res.step < 200 and res.metrics["val_loss"] <= 2.9


@pytest.mark.parametrize("preset", sorted(gpt.PRESETS))
def test_every_preset_resolves_and_builds(preset):
    cfg = config.resolve(gpt.sections(), gpt.PRESETS, preset, {})
    model_cfg = dataclasses.replace(cfg["model"], vocab_size=65)
    if preset != "gpt2":  # 124M parameters: resolving is enough
        model = GPT(model_cfg)
        x = torch.randint(0, 65, (1, 8))
        assert model(x)[0].shape == (1, 8, 65)
    assert cfg["train"].max_iters > 0 and cfg["train"].lr > 0


def test_muon_weight_decay_shrinks_the_hidden_matrices():
    from genforge.models.gpt import GPTConfig
    from genforge.trainer import TrainConfig
    model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16))
    opts = gpt.param_groups(model, TrainConfig(optimizer="muon", muon_lr=0.02, muon_weight_decay=0.5))
    hidden = opts["muon"].param_groups[0]["params"]
    before = [p.detach().clone() for p in hidden]
    for p in hidden:
        p.grad = torch.zeros_like(p)  # no update: only the decay moves the weights
    opts["muon"].step()
    assert all(torch.allclose(p, b * (1 - 0.02 * 0.5)) for p, b in zip(hidden, before))
    with pytest.raises(ValueError, match="train.muon_weight_decay"):
        TrainConfig(muon_weight_decay=-1.0).validate()


def test_bf16_training_with_samples_at_evaluations(corpus, tmp_path):
    ov = overrides(corpus, dtype="bf16", samples=True, max_iters=4, eval_interval=2)
    run, res = gpt.train(overrides=ov, out=tmp_path / "r", progress=False)
    assert res.step == 4 and res.best is not None
    assert (run.file("samples") / "step000004.txt").read_text()
