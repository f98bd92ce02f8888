"""The text2image family: sequence layout and logits mask, guidance arithmetic, KV-cached guided sampling
against a full-forward reference, seeded determinism, the checkpoint round trip (the stage-1 run gone),
every bad prompt, and `genforge sample` with a row per prompt.

    pytest tests/families/test_text2image.py
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genforge
from genforge import cli
from genforge.data.captions import PAD
from genforge.families import base, vqvae
from genforge.families import text2image as t2i
from genforge.models.gpt import GPT, GPTConfig
from tests.conftest import make_digit_like

pytestmark = pytest.mark.usefixtures("one_thread")
PLACES = ["top", "upper", "lower", "bottom"]  # class k of make_digit_like: a bar in band k


def write_captioned(folder, n: int = 64, size: int = 12):
    """A captioned, labelled set: n PNGs of bars and captions.jsonl ("a bar at the top", label "top", ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = make_digit_like(n, size)
    rows = []
    for i, (img, k) in enumerate(zip(images, labels)):
        Image.fromarray(img).save(folder / f"{i}.png")
        rows.append({"image": f"{i}.png", "caption": f"a bar at the {PLACES[k]}", "label": PLACES[k]})
    (folder / "captions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


TRAIN = {"batch_size": 8, "max_iters": 4, "eval_interval": 4, "log_interval": 1, "device": "cpu", "dtype": "fp32",
         "threads": 1}


def tiny_tokenizer(data: str, out) -> str:
    """A real stage-1 run, 4 steps: 12x12 -> 3x3 codes out of 16."""
    run, _ = vqvae.train(overrides={"model": {"image_size": 12, "width": 8, "res_blocks": 0, "codebook_size": 16,
                                              "code_dim": 4}, "vq": {"monitor_images": 8, "grid_pairs": 2},
                                    "data": {"path": data}, "train": TRAIN}, out=str(out), progress=False)
    return str(run.path)


def train_tiny(root, **prior):
    """A 4-step text2image run on the bars set over a 4-step tokenizer run (root/vq); its guidance sweep
    draws 8 images per scale, judged by a 4-step feature network."""
    data = str(write_captioned(root / "bars"))
    ov = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 32}, "data": {"path": data},
          "prior": {"vqvae": tiny_tokenizer(data, root / "vq"), "tune_images": 8, "feature_steps": 4, **prior},
          "train": {**TRAIN, "eval_iters": 2, "samples": False}}
    return t2i.train(overrides=ov, out=str(root / "run"), progress=False)


@pytest.fixture(scope="module")
def tiny_t2i(tmp_path_factory):
    run, _ = train_tiny(tmp_path_factory.mktemp("t2i"))
    return run.path


@pytest.fixture
def pipe(tiny_t2i):
    return genforge.load(tiny_t2i, device="cpu")


# ----------------------------------------------------------------------------- layout, loss, guidance


def test_layout_places_bos_words_and_codes_and_masks_each_position():
    lay = t2i.Layout(words=10, codes=16, text_len=3, code_len=4)
    assert (lay.bos, lay.vocab_size, lay.block_size) == (26, 27, 8)
    seq = lay.sequences(torch.tensor([[5, 6, PAD]]), torch.tensor([[0, 15, 3, 3]]))
    assert seq.tolist() == [[26, 5, 6, 0, 10, 25, 13, 13]]
    allowed = lay.allowed()  # (text_len + L, V): input position t predicts token t + 1
    assert allowed.shape == (7, 27)
    assert allowed[:3, :10].all() and not allowed[:3, 10:].any()  # words only
    assert allowed[3:, 10:26].all() and not allowed[3:, :10].any() and not allowed[:, 26].any()  # codes only, never BOS


def test_prior_loss_is_the_weighted_mean_of_masked_text_and_image_losses():
    lay = t2i.Layout(words=4, codes=5, text_len=2, code_len=3)
    torch.manual_seed(0)
    logits = torch.randn(2, 5, lay.vocab_size)
    seq = lay.sequences(torch.tensor([[2, 3], [3, PAD]]), torch.tensor([[0, 4, 1], [2, 2, 3]]))
    targets = seq[:, 1:]
    pc = t2i.PriorConfig(image_weight=7.0, text_weight=1.0)
    loss, parts = t2i.prior_loss(logits, targets, lay, pc)

    def ce(rows, lo, hi, cols):  # by hand: log-softmax over the allowed slice only
        out = []
        for b in range(2):
            for t in cols:
                z = logits[b, t, lo:hi]
                out.append(-(z[targets[b, t] - lo] - torch.logsumexp(z, 0)))
        return torch.stack(out).mean()
    text, image = ce(2, 0, 4, [0, 1]), ce(2, 4, 9, [2, 3, 4])
    assert torch.allclose(parts["text_loss"], text) and torch.allclose(parts["image_loss"], image)
    assert torch.allclose(loss, (text + 7 * image) / 8)
    boosted = logits.clone()
    boosted[:, :2, 4:] += 50.0  # a code's logit at a text position: masked, so the loss cannot change
    assert torch.allclose(t2i.prior_loss(boosted, targets, lay, pc)[0], loss)


def test_guidance_is_uncond_plus_scale_times_the_difference_over_allowed_tokens():
    logits = torch.tensor([[1.0, 2.0, 0.0, 5.0],   # conditional row
                           [0.0, 1.0, 1.0, 5.0]])  # unconditional row
    out = t2i.guided(logits, 3.0, torch.tensor([True, True, True, False]))
    assert out.tolist() == [[3.0, 4.0, -2.0, -math.inf]]
    assert t2i.guided(logits, 1.0, torch.ones(4, dtype=torch.bool)).tolist() == [[1.0, 2.0, 0.0, 5.0]]
    assert t2i.guided(logits, 0.0, torch.ones(4, dtype=torch.bool)).tolist() == [[0.0, 1.0, 1.0, 5.0]]


@pytest.mark.parametrize("scale,grid,first", [(1.0, None, 0), (2.5, None, 0), (1.0, (2, 2), 0), (2.5, (2, 2), 0),
                                              (30.0, None, 2)])  # 30: a tiny random prior whose codes guidance moves
def test_cached_guided_sampling_matches_a_full_forward_reference(scale, grid, first):
    """Greedy: each step's code is argmax of uncond + g (cond - uncond) over codes, both rows fed that code;
    with 1-D positions, and with 2-D ones over the 2 x 2 code grid (prior.positions=2d); with guidance
    from code `first` on (prior.guidance_from), the codes before it at g = 1."""
    lay = t2i.Layout(words=6, codes=7, text_len=3, code_len=4)
    torch.manual_seed(1)
    prior = GPT(GPTConfig(vocab_size=lay.vocab_size, block_size=lay.block_size, n_layer=2, n_head=2, n_embd=16,
                          rope_grid=grid)).eval()
    captions = torch.tensor([[2, 3, PAD], [4, PAD, PAD]])
    codes = t2i.sample_codes(prior, lay, captions, scale, 0.0, None, None, guidance_from=first)
    cond = torch.cat([torch.full((2, 1), lay.bos), captions], 1)
    uncond = torch.cat([torch.full((2, 1), lay.bos), torch.zeros_like(captions)], 1)
    for step in range(lay.code_len):
        with torch.no_grad():
            c, u = prior(cond)[0][:, -1], prior(uncond)[0][:, -1]
        g = scale if step >= first else 1.0
        nxt = (u + g * (c - u))[:, lay.words:lay.bos].argmax(-1) + lay.words
        cond, uncond = torch.cat([cond, nxt[:, None]], 1), torch.cat([uncond, nxt[:, None]], 1)
    assert torch.equal(codes, cond[:, 1 + lay.text_len:] - lay.words)


# ----------------------------------------------------------------------------- the trained pipeline


def test_training_writes_a_run_that_loads_alone_and_samples_deterministically(tiny_t2i, tmp_path):
    from genforge import checkpoint
    from genforge.run import find_checkpoint
    meta = checkpoint.read_meta(find_checkpoint(tiny_t2i))
    assert meta["family"] == "text2image" and meta["step"] == 4
    assert meta["config"]["prior"]["text_len"] == 5 and meta["config"]["model"]["block_size"] == 1 + 5 + 9
    assert meta["config"]["prior"]["positions"] == "1d" and meta["config"]["model"]["rope_grid"] is None  # auto: 1d but on shapes
    stage1 = find_checkpoint(meta["vqvae"]["source"])
    assert meta["vqvae"]["config"]["codebook_size"] == 16
    assert meta["vqvae"]["sha256"] == hashlib.sha256(stage1.read_bytes()).hexdigest()
    tensors, _ = checkpoint.load(find_checkpoint(tiny_t2i))
    copied = {k[len("module.vqvae."):]: v for k, v in tensors.items() if k.startswith("module.vqvae.")}
    originals, _ = checkpoint.load(stage1, prefix="module.vqvae")
    assert copied.keys() == originals.keys() and all(torch.equal(copied[k], originals[k]) for k in copied)
    assert any(k.startswith("module.prior.") for k in tensors)
    moved = tmp_path / "moved"
    shutil.copytree(tiny_t2i, moved)
    source = Path(meta["vqvae"]["source"])
    source.rename(source.with_name("vq-gone"))  # the stage-1 run gone: the copy in the checkpoint is used
    try:
        pipe = genforge.load(moved, device="cpu")
    finally:
        source.with_name("vq-gone").rename(source)
    assert isinstance(pipe, base.TextToImagePipeline) and pipe.family == "text2image"
    assert (pipe.image_size, pipe.channels, pipe.text_len) == (12, 1, 5)
    a = pipe.generate("a bar at the top", n=3, seed=7)
    assert a.shape == (3, 12, 12, 1) and a.dtype == np.uint8
    assert np.array_equal(a, genforge.load(tiny_t2i, device="cpu").generate("a bar at the top", n=3, seed=7))
    assert not np.array_equal(a, pipe.generate("a bar at the top", n=3, seed=8))
    mixed = pipe.generate(["a bar at the top", "a bar at the bottom"], n=2, seed=3, guidance=1.0, top_k=4)
    assert mixed.shape == (2, 12, 12, 1)
    report = pipe.evaluate()
    assert report["val_loss"] > 0 and math.isfinite(report["val_image_loss"])


def test_2d_positions_give_the_prior_the_code_grid(tmp_path):
    run, _ = train_tiny(tmp_path, positions="2d", tune_guidance=False)
    pipe = genforge.load(run.path, device="cpu")
    prior = pipe.prior.config
    assert prior.rope_grid == (3, 3) and prior.block_size == 1 + 5 + 9  # the 3 x 3 codes: the last 9 positions
    freq = 1e4 ** (-torch.arange(6, 8) / 8)  # head size 16: pairs 6 (even: rows) and 7 (odd: columns), slow enough
    pos = torch.atan2(pipe.prior.rope_sin, pipe.prior.rope_cos)[:, 6:] / freq  # (15, 2): each position's position
    assert pos[:, 0].tolist() == pytest.approx([0, 1, 2, 3, 4, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8], abs=1e-3)
    assert pos[:, 1].tolist() == pytest.approx([0, 1, 2, 3, 4, 5, 6, 7, 8, 6, 7, 8, 6, 7, 8], abs=1e-3)
    images = pipe.generate("a bar at the top", n=2, seed=1)
    assert images.shape == (2, 12, 12, 1) and np.array_equal(images, pipe.generate("a bar at the top", n=2, seed=1))
    with pytest.raises(ValueError, match=r"model.rope_grid=\(2, 2\): a text2image run sets it from prior.positions"):
        t2i.train(overrides={"model": {"rope_grid": [2, 2]}, "data": {"path": str(tmp_path / "bars")},
                             "prior": {"vqvae": str(tmp_path / "vq")}, "train": TRAIN}, out=str(tmp_path / "bad"),
                  progress=False)


def test_bad_prompts_and_settings_are_clear_errors(pipe):
    for bad in ("", "   ", "!!"):
        with pytest.raises(ValueError, match="^prompt: .* has no words"):
            pipe.generate(bad, n=1)
    with pytest.raises(ValueError, match="^prompt: 8 words, more than this model's caption context of 5 words"):
        pipe.generate("a bar at the top at the bottom", n=1)
    with pytest.warns(UserWarning, match="left out: very"):  # unknown words do not count against the context
        assert pipe.generate("a bar at the very top", n=1).shape == (1, 12, 12, 1)
    with pytest.raises(ValueError, match="^prompt: 2 prompts for n=3"):
        pipe.generate(["a bar", "a bar"], n=3)
    with pytest.raises(ValueError, match="^guidance: .*got -1"):
        pipe.generate("a bar", n=1, guidance=-1)
    with pytest.raises(ValueError, match="temperature"):
        pipe.generate("a bar", n=1, temperature=-0.5)


def test_a_prompt_with_no_known_word_gives_unconditional_images_and_a_warning(pipe):
    with pytest.warns(UserWarning, match="no word this model knows; the images are unconditional"):
        unknown = pipe.generate("purple elephants", n=2, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known prompt warns nothing
        uncond = pipe.generate("a bar at the top", n=2, seed=5, guidance=0.0)  # scale 0: the unconditional rows
    assert np.array_equal(unknown, uncond)
    with pytest.warns(UserWarning, match="unknown words left out: purple"):
        partial = pipe.generate("a purple bar at top", n=2, seed=5)
    assert np.array_equal(partial, pipe.generate("a bar at top", n=2, seed=5))


def test_sample_cli_draws_a_row_per_prompt_and_gpt_runs_take_one_prompt(tiny_t2i, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["sample", str(tiny_t2i), "--prompt", "a bar at the top", "--prompt", "a bar at the bottom",
                     "--n", "3", "--out", str(out), "--guidance", "2", "--seed", "1"]) == 0
    assert Image.open(out).size == (3 * 12 + 4 * 2, 2 * 12 + 3 * 2)  # 3 columns, 2 rows, 2-pixel padding
    assert cli.main(["sample", str(tiny_t2i), "--prompt", "", "--out", str(out)]) == 2
    assert "prompt: '' has no words" in capsys.readouterr().err
    assert cli.main(["sample", str(tiny_t2i), "--out", str(out)]) == 2
    assert "--prompt: a text-to-image run needs a prompt" in capsys.readouterr().err


def test_gpt_sample_refuses_two_prompts(corpus, tmp_path, capsys):
    from genforge.families import gpt
    run, _ = gpt.train(overrides={"data": {"path": str(corpus)}, "model": {"n_layer": 1, "n_head": 2, "n_embd": 16,
                                                                          "block_size": 16},
                                  "train": {"max_iters": 1, "eval_interval": 1, "batch_size": 2, "samples": False,
                                            "device": "cpu", "dtype": "fp32"}}, out=str(tmp_path / "gpt"),
                       progress=False)
    assert cli.main(["sample", str(run.path), "--prompt", "a", "--prompt", "b", "--max-new-tokens", "2"]) == 2
    assert "--prompt: given 2 times; a gpt run takes one prompt" in capsys.readouterr().err
    assert cli.main(["sample", str(run.path), "--prompt", "Fi", "--max-new-tokens", "3", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("Fi")


def test_config_and_data_errors_name_the_field(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no image tokenizer: pass --vqvae RUN"):
        t2i.load_stage1("")
    with pytest.raises(ValueError, match="prior.caption_dropout must be in"):
        t2i.train(overrides={"data": {"path": "x"}, "prior": {"caption_dropout": 1.5}}, out=str(tmp_path / "r"))
    with pytest.raises(FileNotFoundError, match="^data.path no-such-set: no such file or folder"):
        t2i.resolve_data("no-such-set")


def test_train_cli_takes_the_tokenizer_as_vqvae(tiny_t2i, tmp_path, capsys):
    from genforge import checkpoint
    from genforge.run import find_checkpoint
    meta = checkpoint.read_meta(find_checkpoint(tiny_t2i))
    args = ["train", "text2image", "--vqvae", meta["vqvae"]["source"], "--data", meta["config"]["data"]["path"],
            "--out", str(tmp_path / "cli"), "--no-progress", "--model.n_layer=1", "--model.n_embd=16",
            "--model.n_head=2", "--train.max_iters=1", "--train.eval_interval=1", "--train.samples=false",
            "--train.device=cpu", "--train.dtype=fp32", "--prior.tune_guidance=false"]
    assert cli.main(args) == 0
    assert "genforge sample" in capsys.readouterr().out
    assert checkpoint.read_meta(find_checkpoint(tmp_path / "cli"))["guidance"] == {"scale": 3.0, "guidance_from": 0,
                                                                                "method": "config"}
    saved = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert saved["config"]["prior"]["vqvae"] == meta["vqvae"]["source"] and saved["family"] == "text2image"
    assert cli.main(["train", "text2image", "--data", "mnist", "--out", str(tmp_path / "none")]) == 2
    assert "no image tokenizer: pass --vqvae RUN" in capsys.readouterr().err


def test_eval_reports_the_priors_losses_and_caption_accuracy(tiny_t2i, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 4-step judge is a poor one, and says so
        assert cli.main(["eval", str(tiny_t2i), "--n", "8", "--device", "cpu", "--feature-steps", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prior"]["val_loss"] > 0 and math.isfinite(report["prior"]["val_text_loss"])
    assert 0 <= report["caption_accuracy"]["own"]["all"] <= 1  # a captioned set: its own test captions


# ----------------------------------------------------------------------------- measured guidance, cached codes, warnings


def test_training_ends_with_a_guidance_sweep_and_sampling_uses_its_choice(tiny_t2i, tmp_path, capsys, monkeypatch):
    from genforge import checkpoint
    from genforge.metrics.text2image import SCALES, choose
    best, last = (checkpoint.read_meta(tiny_t2i / "checkpoints" / f"{w}.safetensors")["guidance"] for w in ("best", "last"))
    assert best == last and best["method"] == "sweep" and best["n"] == 8
    width = genforge.load(tiny_t2i, device="cpu").vqvae.grid[1]  # guidance from code 0 and from one code row
    assert [(r["scale"], r["guidance_from"]) for r in best["settings"]] == \
        [(1.0, 0)] + [(g, f) for g in SCALES[1:] for f in (0, width)]
    pick = choose(best["settings"])
    assert (best["scale"], best["guidance_from"]) == (pick["scale"], pick["guidance_from"])
    tensors, meta = checkpoint.load(tiny_t2i / "checkpoints" / "best.safetensors")
    five = checkpoint.save(tmp_path / "five.safetensors", tensors,
                           {**meta, "guidance": {**best, "scale": 5.0, "guidance_from": 2}})
    pipe = genforge.load(five, device="cpu")
    assert (pipe.guidance, pipe.guidance_from) == (5.0, 2)  # the metadata round trip
    used = []
    real = t2i.sample_codes
    monkeypatch.setattr(t2i, "sample_codes", lambda *a: used.append((a[3], a[7])) or real(*a))
    default = pipe.generate("a bar at the top", n=4, seed=3)
    assert used == [(5.0, 2)]
    assert np.array_equal(default, pipe.generate("a bar at the top", n=4, seed=3, guidance=5.0, guidance_from=2))
    assert cli.main(["sample", str(five), "--prompt", "a bar at the top", "--out", str(tmp_path / "g.png")]) == 0
    assert used[-1] == (5.0, 2)
    assert "guidance 5 from code 2 (the run's default, chosen on validation" in capsys.readouterr().err
    assert cli.main(["sample", str(five), "--prompt", "a bar", "--out", str(tmp_path / "h.png"), "--guidance", "1.5",
                     "--guidance-from", "0"]) == 0
    assert used[-1] == (1.5, 0)
    bad = checkpoint.save(tmp_path / "bad.safetensors", tensors, {**meta, "guidance": {"scale": -2}})
    with pytest.raises(ValueError, match="^checkpoint metadata guidance.scale: .*got -2"):
        genforge.load(bad, device="cpu")


def test_eval_measures_the_guidance_of_a_run_that_has_none(tiny_t2i, tmp_path, capsys):
    from genforge import checkpoint
    tensors, meta = checkpoint.load(tiny_t2i / "checkpoints" / "best.safetensors")
    old = checkpoint.save(tmp_path / "old.safetensors", tensors, {k: v for k, v in meta.items() if k != "guidance"})
    assert genforge.load(old, device="cpu").guidance == 3.0  # no measurement: prior.guidance
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["eval", str(old), "--n", "8", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["guidance"]["method"] == "sweep" and checkpoint.read_meta(old)["guidance"] == report["guidance"]
    assert report["guidance"] == meta["guidance"]  # seeded: the same sweep as at the end of training
    g = report["guidance"]
    assert report["sampling"] == {"guidance": g["scale"], "guidance_from": g["guidance_from"]}


def test_eval_retune_updates_an_older_run_and_flags_override_the_setting(tiny_t2i, tmp_path, capsys, monkeypatch):
    from genforge import checkpoint
    tensors, meta = checkpoint.load(tiny_t2i / "checkpoints" / "best.safetensors")
    old = checkpoint.save(tmp_path / "old.safetensors", tensors, {**meta, "guidance": {"scale": 2.0, "method": "sweep",
                                                                                      "accuracy": {"2": 1.0}}})
    assert genforge.load(old, device="cpu").guidance_from == 0  # an older sweep: prior.guidance_from
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["eval", str(old), "--n", "8", "--device", "cpu", "--retune", "--guidance-from", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert checkpoint.read_meta(old)["guidance"] == report["guidance"] == meta["guidance"]  # re-measured, saved
    assert report["sampling"] == {"guidance": meta["guidance"]["scale"], "guidance_from": 1}  # the flag's
    from genforge.metrics import text2image as metrics
    pipe = genforge.load(old, device="cpu")
    monkeypatch.setattr(metrics, "guidance_sweep", lambda *a, **kw: {**meta["guidance"], "scale": 1.5, "guidance_from": 2})
    t2i.record_guidance(pipe, old, sweep=True)  # the API: the pipeline and the checkpoint take the new choice
    assert (pipe.guidance, pipe.guidance_from) == (1.5, 2) and checkpoint.read_meta(old)["guidance"]["guidance_from"] == 2
    assert cli.main(["eval", str(old), "--n", "8", "--device", "cpu", "--guidance", "200"]) == 2
    assert "--guidance: the guidance scale must be a number in [0, 100], got 200" in capsys.readouterr().err
    assert cli.main(["eval", str(old), "--n", "8", "--device", "cpu", "--guidance-from", "-1"]) == 2
    assert "--guidance-from must be >= 0, got -1" in capsys.readouterr().err


def test_the_priors_codes_are_cached_by_tokenizer_and_images(tiny_t2i, tmp_path, monkeypatch):
    from genforge import checkpoint
    from genforge.models.vqvae import VQVAE
    meta = checkpoint.read_meta(tiny_t2i / "checkpoints" / "best.safetensors")
    calls = []
    real = VQVAE.encode
    monkeypatch.setattr(VQVAE, "encode", lambda self, x: calls.append(len(x)) or real(self, x))
    ov = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16}, "data": {"path": meta["config"]["data"]["path"]},
          "prior": {"vqvae": meta["vqvae"]["source"], "tune_guidance": False},
          "train": {**TRAIN, "max_iters": 1, "eval_interval": 1, "eval_iters": 1, "samples": False}}
    t2i.train(overrides=ov, out=str(tmp_path / "a"), progress=False)
    assert sum(calls) == 64  # every training and test image, once
    t2i.train(overrides=ov, out=str(tmp_path / "b"), progress=False)
    assert sum(calls) == 64  # the second build reads the cache
    vq = genforge.load(tiny_t2i, device="cpu").vqvae
    images = np.random.default_rng(0).integers(0, 256, (10, 12, 12, 1), dtype=np.uint8)
    first = t2i.cached_codes(vq, "a" * 64, images)
    assert torch.equal(first, t2i.image_codes(vq, images)) and torch.equal(t2i.cached_codes(vq, "a" * 64, images), first)
    del calls[:]
    t2i.cached_codes(vq, "b" * 64, images)  # another tokenizer misses the cache
    t2i.cached_codes(vq, "a" * 64, images[:9])  # so do other images
    assert calls == [10, 9]


def test_a_set_without_labels_has_no_judge_so_the_run_keeps_the_configured_guidance(tiny_t2i, tmp_path, capsys):
    from genforge import checkpoint
    meta = checkpoint.read_meta(tiny_t2i / "checkpoints" / "best.safetensors")
    data = write_captioned(tmp_path / "bars")
    rows = [json.loads(line) for line in (data / "captions.jsonl").read_text().splitlines()]
    (data / "captions.jsonl").write_text("".join(json.dumps({"image": r["image"], "caption": r["caption"]}) + "\n"
                                                 for r in rows))
    ov = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16}, "data": {"path": str(data)},
          "prior": {"vqvae": meta["vqvae"]["source"], "guidance": 2.5},
          "train": {**TRAIN, "max_iters": 1, "eval_interval": 1, "eval_iters": 1, "samples": False}}
    run, _ = t2i.train(overrides=ov, out=str(tmp_path / "run"), progress=False)
    assert "no labelled images to judge a guidance sweep on" in capsys.readouterr().err
    assert checkpoint.read_meta(run.checkpoint("best"))["guidance"] == {"scale": 2.5, "guidance_from": 0,
                                                                         "method": "config"}
    assert genforge.load(run.path, device="cpu").guidance == 2.5


def test_generate_returns_its_warnings_instead_of_issuing_them(pipe):
    prompts = ["a bar at the zenith", "purple elephants"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images, said = pipe.generate(prompts, n=2, seed=4, return_warnings=True)
    assert said == ["prompt 'a bar at the zenith': unknown words left out: zenith",
                    "prompt 'purple elephants': no word this model knows; the images are unconditional"]
    with pytest.warns(UserWarning) as issued:
        assert np.array_equal(images, pipe.generate(prompts, n=2, seed=4))
    assert [str(w.message) for w in issued] == said


def test_sample_cli_guidance_from_reaches_the_sampler_and_refuses_a_negative_code(tiny_t2i, tmp_path, capsys, monkeypatch):
    seen = []
    real = t2i.sample_codes
    monkeypatch.setattr(t2i, "sample_codes", lambda *a, **kw: seen.append(a[-1]) or real(*a, **kw))
    out = tmp_path / "g.npz"
    assert cli.main(["sample", str(tiny_t2i), "--prompt", "a bar at the top", "--n", "2", "--out", str(out),
                     "--guidance", "2", "--guidance-from", "3"]) == 0
    assert seen == [3] and np.load(out)["images"].shape[0] == 2
    assert cli.main(["sample", str(tiny_t2i), "--prompt", "a bar at the top", "--guidance-from", "-1"]) == 2
    assert "--guidance-from must be >= 0, got -1" in capsys.readouterr().err
