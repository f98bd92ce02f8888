"""The captiongan family: training steps, caption conditioning, checkpoints, determinism and bad inputs."""
import argparse
import json
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import genforge
from genforge.data.captions import PAD
from genforge.families import captiongan
from genforge.models.captiongan import CaptionEncoder, CaptionEncoderConfig
from tests.conftest import write_captioned_bars

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"model": {"g_width": 8, "d_width": 4, "z_dim": 16},
        "text": {"dim": 16, "n_head": 2, "text_len": 8},
        "train": {"batch_size": 8, "max_iters": 4, "eval_interval": 2, "log_interval": 1, "dtype": "fp32",
                  "threads": 1, "samples": False},
        "gan": {"monitor_samples": 0, "ema": 0.0}}  # the EMA path: tests/test_families.py


def overrides(data, **sections):
    ov = {k: dict(v) for k, v in TINY.items()}
    ov["data"] = {"path": str(data)}
    for name, values in sections.items():
        ov.setdefault(name, {}).update(values)
    return ov


@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    return write_captioned_bars(tmp_path_factory.mktemp("bars"))


@pytest.fixture(scope="module")
def trained(bars, tmp_path_factory):
    run, result = captiongan.train("captiongan", overrides(bars), out=str(tmp_path_factory.mktemp("r") / "run"),
                                   progress=False)
    return run, result


def metrics(run):
    rows = [json.loads(line) for line in run.file("metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train/d_loss"], r["train/g_loss"]) for r in rows if "train/d_loss" in r]


def test_trains_and_reloads_to_a_text_to_image_pipeline(trained):
    run, result = trained
    assert result.step == 4 and result.stopped == "max_iters"
    pipe = genforge.load(run.path)
    assert isinstance(pipe, genforge.families.base.TextToImagePipeline) and pipe.family == "captiongan"
    assert pipe.text_len == 8 and pipe.image_size == 28 and pipe.channels == 1
    vocab = json.loads(run.file("caption_vocab.json").read_text())
    assert pipe.vocab.words == vocab["words"] and "bottom" in vocab["words"]
    images = pipe.generate("a bar at the top", n=3, seed=0)
    assert images.shape == (3, 28, 28, 1) and images.dtype == np.uint8
    assert np.array_equal(images, genforge.load(run.path).generate("a bar at the top", n=3, seed=0))


def test_training_is_deterministic(bars, trained, tmp_path):
    again, _ = captiongan.train("captiongan", overrides(bars), out=str(tmp_path / "again"), progress=False)
    assert metrics(again) == metrics(trained[0]) and len(metrics(again)) == 4


def test_the_caption_conditions_g_and_d():
    c = CaptionEncoderConfig(vocab_size=10, text_len=6, dim=16, n_head=2)
    from genforge.models.captiongan import build
    from genforge.models.gan import GANConfig
    torch.manual_seed(0)
    g, d = build(GANConfig(g_width=8, d_width=4, z_dim=16, spectral_norm=True), c)
    g.eval()
    z = torch.randn(1, 16).expand(2, -1)
    caps = torch.tensor([[2, 3, 0, 0, 0, 0], [4, 5, 6, 0, 0, 0]])
    x = g(z, caps)
    assert not torch.allclose(x[0], x[1])  # same latent, other caption: another image
    assert torch.equal(g(z, caps[:1].expand(2, -1))[0], g(z, caps[:1].expand(2, -1))[1])
    logits = d(x[:1].expand(2, -1, -1, -1), caps)  # same image, other caption: another logit (projection)
    assert logits.shape == (2,) and logits[0] != logits[1]
    assert d.project.out[-1].parametrizations.weight  # D's caption encoder is spectrally normalised


def test_caption_encoder_ignores_padding_and_gives_the_empty_caption_a_constant():
    enc = CaptionEncoder(CaptionEncoderConfig(vocab_size=10, text_len=6, dim=16, n_head=2), out_dim=4).eval()
    short = enc(torch.tensor([[2, 3, 0, 0, 0, 0]]))
    assert torch.allclose(short, enc(torch.tensor([[2, 3, 0, 0, 0, 0]])), atol=0)
    with torch.no_grad():  # a padding id's embedding never reaches the output
        before = enc(torch.tensor([[2, 3, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]))
        enc.wte.weight[PAD] += 5.0
        after = enc(torch.tensor([[2, 3, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]))
    assert torch.allclose(before, after, atol=1e-6) and torch.isfinite(after).all()
    assert torch.allclose(after[1], enc.out(torch.zeros(1, 16))[0])  # empty caption: the MLP of zero


def task_of(data, tmp_path, **sections):
    """The CaptionGANTask train() builds, bound to a Trainer that never runs."""
    from genforge.run import RunDir
    from genforge.runtime import make_runtime
    from genforge.trainer import Trainer
    tasks = []

    class Stop(Exception):
        pass

    def keep(self, task, *a, **k):
        tasks.append(task)
        raise Stop
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "__init__", keep)
        with pytest.raises(Stop):
            captiongan.train("captiongan", overrides(data, **sections), out=str(tmp_path / "run"), progress=False)
    Trainer(tasks[0], tasks[0].cfg["train"], RunDir(tmp_path / "unused"), make_runtime("cpu", "fp32", threads=1))
    return tasks[0]


def test_a_training_step_moves_only_its_models_and_drops_captions(bars, tmp_path):
    task = task_of(bars, tmp_path, text={"drop_caption": 0.5})
    ids = torch.cat([task._fake_labels(8) for _ in range(8)])  # (64, T)
    empty = (ids == PAD).all(1)
    assert 0.2 < empty.float().mean() < 0.8 and (ids[~empty] != PAD).any(1).all()
    (_, d_phase), (_, g_phase) = task.phases(0)
    before = [p.clone() for p in task.d.parameters()]
    loss, logs = d_phase()
    loss.backward()
    task.optimizers["d"].step()
    assert "d_loss" in logs and any(not torch.equal(a, b) for a, b in zip(before, task.d.parameters()))
    assert all(p.grad is None for p in task.g.parameters())
    assert any(p.grad is not None for p in task.d.project.parameters())  # D's caption encoder learns too


def test_prompt_lists_warnings_and_bad_inputs(trained):
    pipe = genforge.load(trained[0].path)
    one = pipe.generate(["a bar at the top", "the bottom bar"], n=2, seed=3)
    assert np.array_equal(one[:1], pipe.generate("a bar at the top", n=1, seed=3))
    assert not np.array_equal(pipe.generate("a bar at the top", n=2, seed=3), pipe.generate("a bar at the top", n=2, seed=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unknown = pipe.generate("zebra giraffe", n=2, seed=1)
        assert np.array_equal(unknown, pipe.generate(["zebra", "giraffe"], n=2, seed=1))  # both: the empty caption
    assert any("no word this model knows" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # returned, not issued
        images, said = pipe.generate("zebra giraffe", n=2, seed=1, return_warnings=True)
    assert np.array_equal(images, unknown) and said == [str(w.message) for w in caught][:1]
    assert said == ["prompt 'zebra giraffe': no word this model knows; generating unconditional images"]
    for kwargs, message in [({"prompt": ""}, "prompt: empty"), ({"prompt": "   "}, "prompt: empty"),
                            ({"prompt": "a " * 9}, "prompt: 9 words, more than this model's caption context of 8"),
                            ({"prompt": ["a bar"], "n": 2}, "prompt: 1 captions for n=2"),
                            ({"prompt": "a bar", "guidance": 3.0}, "guidance:"),
                            ({"prompt": "a bar", "top_k": 5}, "top_k:"),
                            ({"prompt": "a bar", "temperature": 0.0}, "temperature: must be > 0"),
                            ({"prompt": "a bar", "n": 0}, "n must be positive")]:
        with pytest.raises(ValueError, match=message):
            pipe.generate(**{"n": 1, **kwargs})


def test_training_refuses_bad_set_ups(bars, image_npz, tmp_path):
    with pytest.raises(ValueError, match="gan.conditional"):
        captiongan.train("captiongan", overrides(bars, gan={"conditional": True}), out=str(tmp_path / "a"),
                         progress=False)
    with pytest.raises(ValueError, match="more than this model's caption context of 2 words"):
        captiongan.train("captiongan", overrides(bars, text={"text_len": 2}), out=str(tmp_path / "b"), progress=False)
    np.savez(tmp_path / "plain.npz", images=np.zeros((8, 28, 28), np.uint8))  # neither captions nor labels
    with pytest.raises(ValueError, match="plain.npz"):
        captiongan.train("captiongan", overrides(tmp_path / "plain.npz"), out=str(tmp_path / "c"), progress=False)


def test_sample_command_writes_a_row_per_prompt(trained, tmp_path, capsys):
    pipe = genforge.load(trained[0].path)
    out = tmp_path / "grid.png"
    args = argparse.Namespace(prompt=["a bar at the top", "the bottom bar"], n=3, out=str(out), seed=0, guidance=None)
    assert captiongan.sample_command(pipe, args) == 0
    grid = Image.open(out)
    assert grid.size == (2 + 3 * 30, 2 + 2 * 30)  # 3 columns, 2 rows of 28px images with 2px padding
    args = argparse.Namespace(prompt="a bar", n=2, out=str(tmp_path / "s.npz"), seed=0, guidance=None)
    captiongan.sample_command(pipe, args)
    assert np.load(tmp_path / "s.npz")["images"].shape == (2, 28, 28, 1)
    with pytest.raises(ValueError, match="--guidance"):
        captiongan.sample_command(pipe, argparse.Namespace(prompt="a", n=1, out=str(out), seed=0, guidance=2.0))


def test_eval_command_hands_the_pipeline_to_the_text_to_image_evaluation(trained, monkeypatch, capsys):
    seen = {}

    def evaluate_text2image(pipe, n, seed, data, feature_steps, where):
        seen.update(family=pipe.family, n=n, seed=seed, data=data, feature_steps=feature_steps)
        return {"caption_accuracy": 0.5}
    module = types.ModuleType("genforge.metrics.text2image")
    module.evaluate_text2image = evaluate_text2image
    monkeypatch.setitem(sys.modules, "genforge.metrics.text2image", module)
    args = argparse.Namespace(run=str(trained[0].path), n=16, seed=1, data=None, device="cpu", feature_steps=0)
    assert captiongan.eval_command(args) == 0
    assert seen == {"family": "captiongan", "n": 16, "seed": 1, "data": None, "feature_steps": 0}
    assert json.loads(capsys.readouterr().out) == {"caption_accuracy": 0.5}


def test_a_labelled_set_without_captions_trains_on_template_captions(image_npz, tmp_path):
    run, _ = captiongan.train("captiongan", overrides(image_npz, train={"max_iters": 1, "eval_interval": 1}),
                              out=str(tmp_path / "run"), progress=False)
    pipe = genforge.load(run.path)
    assert {"handwritten", "digit", "zero", "three"} <= set(pipe.vocab.words)  # classes 0..3 of the .npz
    assert pipe.generate("a handwritten three", n=1, seed=0).shape == (1, 28, 28, 1)


def test_mismatched_captions_add_a_fake_term_to_d(bars, tmp_path):
    from genforge.models.gan import d_fake_loss
    task = task_of(bars, tmp_path, text={"mismatch": 0.5})
    seen = []
    forward = task.d.forward
    task.d.forward = lambda x, labels=None: seen.append(labels) or forward(x, labels)
    loss, logs = task.phases(0)[0][1]()
    wrong_ids = seen[2]  # D sees the real, the fake, then the real images with rolled captions
    assert torch.equal(wrong_ids, task._batch[1].roll(1, 0)) and len(seen) == 3
    assert loss.item() == pytest.approx(logs["d_loss"] + 0.5 * logs["mismatch"], rel=1e-6)
    assert d_fake_loss("hinge", torch.tensor([-2.0, 0.0])).item() == pytest.approx(0.5)  # relu(1 + logit)
    assert "mismatch" not in task_of(bars, tmp_path, text={"mismatch": 0.0}).phases(0)[0][1]()[1]


def test_a_class_without_training_images_leaves_the_monitor_unconditional(tmp_path):
    """The shapes set names colour+kind classes that only its held-out split holds: training must not ask
    for them (it once failed with an IndexError) and scores the training captions' images instead."""
    from tests.conftest import make_digit_like
    images, labels = make_digit_like()  # classes 0..3; a fifth name no image carries
    np.savez(tmp_path / "gap.npz", images=images, labels=labels, class_names=np.array(["a", "b", "c", "d", "e"]))
    task = task_of(tmp_path / "gap.npz", tmp_path)
    assert task.score_classes == 0
    run, _ = captiongan.train("captiongan", overrides(tmp_path / "gap.npz", train={"max_iters": 1, "eval_interval": 1},
                                                      gan={"monitor_samples": 8}), out=str(tmp_path / "run"), progress=False)
    assert genforge.load(run.path).generate("a handwritten three", n=1, seed=0).shape == (1, 28, 28, 1)
