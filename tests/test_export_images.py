"""ONNX export of the image families (vqvae, text2image, captiongan, imageclf) against PyTorch, int8, the
`genforge sample --backend onnx` path for text-to-image, and the runtime in a process that cannot import torch.

    pytest tests/test_export_images.py
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genforge import inference
from genforge.cli import main
from genforge.export import export
from genforge.families import captiongan, imageclf, text2image, vqvae
from genforge.families.text2image import sample_codes
from genforge.onnx_pipelines import load as load_onnx

from .conftest import NO_TORCH, make_digit_like, write_captioned_bars

pytestmark = pytest.mark.usefixtures("one_thread")
TRAIN = {"batch_size": 8, "max_iters": 4, "eval_interval": 4, "log_interval": 1, "device": "cpu", "dtype": "fp32",
         "threads": 1}
PROMPTS = ["a bar at the top", "the bottom bar", "one bright bar, upper"]


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@pytest.fixture(scope="module")
def fast_exporter():
    """Speed only: the exporter rebuilds onnxscript's table of ATen functions (parsing ~500 functions' source,
    seconds) for every graph; six graphs here share one. Without this module (another onnxscript) it is a no-op."""
    try:
        apis = importlib.import_module("onnxscript._framework_apis.torch_2_11")
    except ImportError:
        apis = None
    with pytest.MonkeyPatch.context() as mp:
        if hasattr(apis, "get_torchlib_ops"):
            mp.setattr(apis, "get_torchlib_ops", functools.cache(apis.get_torchlib_ops))
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory, fast_exporter):
    """Four-step runs of every image family on the captioned bars (28x28), each exported once:
    {family: (run, export dir)}; text2image, captiongan and imageclf with --quantize int8."""
    root = tmp_path_factory.mktemp("export-images")
    torch.set_num_threads(1)
    bars = write_captioned_bars(root / "bars", n=48)
    vq, _ = vqvae.train(overrides={"model": {"image_size": 28, "width": 8, "res_blocks": 1, "codebook_size": 16,
                                             "code_dim": 4}, "vq": {"monitor_images": 8, "grid_pairs": 2},
                                   "data": {"path": str(bars)}, "train": TRAIN}, out=str(root / "vq"), progress=False)
    t2i, _ = text2image.train(overrides={"model": {"n_layer": 1, "n_head": 2, "n_embd": 32},
                                         "data": {"path": str(bars)}, "prior": {"vqvae": str(vq.path), "guidance": 2.0,
                                                                 "tune_guidance": False},
                                         "train": {**TRAIN, "eval_iters": 2, "samples": False}},
                              out=str(root / "t2i"), progress=False)
    gan, _ = captiongan.train("captiongan", {
        "model": {"g_width": 8, "d_width": 4, "z_dim": 16}, "text": {"dim": 16, "n_head": 2, "text_len": 8},
        "data": {"path": str(bars)}, "gan": {"monitor_samples": 0, "ema": 0.0},
        "train": {**TRAIN, "eval_interval": 4, "samples": False}}, out=str(root / "cgan"), progress=False)
    images, labels = make_digit_like(n=96)
    np.savez(root / "bars.npz", images=images, labels=labels)
    clf, _ = imageclf.train("cnn", {"model": {"width": 8, "hidden": 16}, "data": {"path": str(root / "bars.npz")},
                                    "train": {**TRAIN, "max_iters": 30, "eval_interval": 30}, "fit": {"epochs": 0}},
                            out=str(root / "clf"), progress=False)
    out = {}
    for name, run, quantize in (("vqvae", vq, None), ("text2image", t2i, "int8"), ("captiongan", gan, "int8"),
                                ("imageclf", clf, "int8")):
        out[name] = (run.path, export(str(run.path), quantize=quantize))
    return out


def fp32(out: Path):
    return load_onnx(out, model=json.loads((out / "genforge_export.json").read_text())["fp32_model"])


def test_vqvae_codes_identical_and_images_within_1e5(runs):
    run, out = runs["vqvae"]
    onnx_pipe, pipe = load_onnx(out), inference.load(run, device="cpu")
    images = make_digit_like(n=7, seed=3)[0][..., None]
    for n in (3, 7):  # two batch sizes
        codes = onnx_pipe.encode(images[:n])
        assert np.array_equal(codes, pipe.encode(images[:n])) and codes.shape == (n, 49)
        with torch.no_grad():
            ref = pipe.model.decode(torch.from_numpy(codes)).numpy()  # (n, 1, 28, 28)
        assert max_diff(onnx_pipe.raw(codes), ref) <= 1e-5
    assert max_diff(onnx_pipe.reconstruct(images), pipe.reconstruct(images)) <= 1
    with pytest.raises(ValueError, match=r"codes must be in 0..15"):
        onnx_pipe.decode(np.full((1, 49), 16))
    with pytest.raises(ValueError, match=r"images: expected uint8 \(N, 28, 28, 1\)"):
        onnx_pipe.encode(images.astype(np.float32))


def test_text2image_prior_logits_decoder_and_greedy_codes_match_torch(runs):
    run, out = runs["text2image"]
    onnx_pipe, pipe = fp32(out), inference.load(run, device="cpu")
    manifest = onnx_pipe.meta
    assert manifest["layout"] == {"words": len(pipe.vocab), "codes": 16, "text_len": pipe.text_len, "code_len": 49}
    assert manifest["caption_vocab"]["words"] == pipe.vocab.words and manifest["defaults"]["guidance"] == 2.0
    V, T = pipe.layout.vocab_size, pipe.layout.block_size
    ids = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = pipe.prior(ids)[0].numpy()  # (3, T, V)
    assert max_diff(onnx_pipe.logits(ids[:1, :9].numpy()), ref[:1, :9]) <= 1e-4  # batch 1 without a past
    logits, past = onnx_pipe.forward(ids[:, :20].numpy(), onnx_pipe.empty_past(3), 0)  # batch 3: 20, then the rest
    assert max_diff(logits, ref[:, :20]) <= 1e-4
    assert max_diff(onnx_pipe.forward(ids[:, 20:].numpy(), past, 20)[0], ref[:, 20:]) <= 1e-4
    codes = np.random.default_rng(1).integers(0, 16, (5, 49))
    with torch.no_grad():
        images = pipe.vqvae.decode(torch.from_numpy(codes)).numpy()
    assert max_diff(onnx_pipe.decoder.raw(codes), images) <= 1e-5
    captions, _ = pipe.captions(PROMPTS)
    assert np.array_equal(onnx_pipe.vocab.encode_batch(PROMPTS, pipe.text_len), captions.numpy())
    greedy = {}
    for g in (1.0, 2.0, 0.0):  # conditional only, guided, unconditional: greedy (top_k=1) codes identical
        ref_codes = sample_codes(pipe.prior, pipe.layout, captions, g, 1.0, 1, torch.Generator().manual_seed(0))
        greedy[g] = onnx_pipe.sample_codes(captions.numpy(), g, 1.0, 1, np.random.default_rng(0))
        assert np.array_equal(greedy[g], ref_codes.numpy()), g
    assert len(np.unique(greedy[1.0])) > 1 and len(np.unique(greedy[2.0])) > 1  # not one code everywhere
    assert not np.array_equal(greedy[1.0], greedy[2.0])  # the guided rows change the codes
    onnx_pipe.defaults["guidance_from"] = 20  # prior.guidance_from in the manifest: the first 20 codes at scale 1
    late = onnx_pipe.sample_codes(captions.numpy(), 2.0, 1.0, 1, np.random.default_rng(0))
    ref_late = sample_codes(pipe.prior, pipe.layout, captions, 2.0, 1.0, 1, None, guidance_from=20)
    assert np.array_equal(late, ref_late.numpy()) and np.array_equal(late[:, :20], greedy[1.0][:, :20])
    assert not np.array_equal(late, greedy[2.0])  # the setting changes the codes
    onnx_pipe.defaults["guidance_from"] = 0
    torch_images = pipe.generate(PROMPTS, 3, seed=0, top_k=1)
    assert max_diff(onnx_pipe.generate(PROMPTS, 3, seed=5, top_k=1), torch_images) <= 1  # pixels: rounding only
    a, b = (onnx_pipe.generate("a bar at the top", 4, seed=7, temperature=1.5) for _ in range(2))
    assert np.array_equal(a, b) and a.shape == (4, 28, 28, 1) and a.dtype == np.uint8
    assert not np.array_equal(a, onnx_pipe.generate("a bar at the top", 4, seed=8, temperature=1.5))


def test_text2image_prompts_are_read_as_torch_reads_them(runs):
    run, out = runs["text2image"]
    onnx_pipe = load_onnx(out)
    with pytest.warns(UserWarning, match="unknown words left out: purple"):
        onnx_pipe.generate("a purple bar at the top", 1, seed=0)
    with pytest.warns(UserWarning, match="no word this model knows; the images are unconditional"):
        onnx_pipe.generate("zebra", 1, seed=0)
    cases = [("", "has no words"), ("bar " * 30, "more than this model's caption context"),
             (["top", "bottom"], r"2 prompts for n=3")]
    for prompt, msg in cases:
        with pytest.raises(ValueError, match=msg):
            onnx_pipe.generate(prompt, 3)
    with pytest.raises(ValueError, match=r"guidance: the guidance scale must be a number in \[0, 100\]"):
        onnx_pipe.generate("top", 1, guidance=-1)
    with pytest.raises(ValueError, match="top_k"):
        onnx_pipe.generate("top", 1, top_k=0)


def test_served_text2image_export_answers_with_its_own_warnings(runs):
    """The images route over an exported text2image run: the pipeline's images for the seed, and the prompt's
    warnings in the reply (returned by the pipeline, not caught from the process-wide warning state)."""
    import base64
    import io

    import httpx
    from PIL import Image

    from tests.server.conftest import LiveServer

    _, out = runs["text2image"]
    pipe = load_onnx(out)
    images, notes = pipe.generate("a purple bar at the top", 2, seed=5, return_warnings=True)
    assert notes == ["prompt 'a purple bar at the top': unknown words left out: purple"]
    assert np.array_equal(images, pipe.generate("a purple bar at the top", 2, seed=5, return_warnings=True)[0])
    server = LiveServer([f"bars={out}"])
    try:
        reply = httpx.post(server.url + "/v1/images/generations", timeout=60,
                           json={"model": "bars", "prompt": "a purple bar at the top", "n": 2, "seed": 5})
    finally:
        server.stop()
    assert reply.status_code == 200, reply.text
    assert reply.json()["warnings"] == notes
    got = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(d["b64_json"])))).reshape(images.shape[1:])
                    for d in reply.json()["data"]])
    assert np.array_equal(got, images)


def test_captiongan_generator_parity(runs):
    run, out = runs["captiongan"]
    onnx_pipe, pipe = fp32(out), inference.load(run, device="cpu")
    for n in (3, 5):
        z = np.random.default_rng(n).standard_normal((n, 16)).astype(np.float32)
        ids, _ = pipe.encode((PROMPTS + ["zebra"])[:n] if n == 3 else "a bar at the top", n)
        with torch.no_grad():
            ref = pipe.g(torch.from_numpy(z), ids).numpy()  # (n, 1, 28, 28)
        assert max_diff(onnx_pipe.raw(z, ids.numpy()), ref) <= 1e-5
    a = onnx_pipe.generate(PROMPTS, 3, seed=1)
    assert np.array_equal(a, onnx_pipe.generate(PROMPTS, 3, seed=1)) and a.shape == (3, 28, 28, 1)
    with pytest.raises(ValueError, match="no guidance"):
        onnx_pipe.generate("top", 1, guidance=2.0)


def test_imageclf_parity(runs):
    run, out = runs["imageclf"]
    onnx_pipe, pipe = fp32(out), inference.load(run, device="cpu")
    images = make_digit_like(n=7, seed=5)[0][..., None]
    for n in (3, 7):
        assert max_diff(onnx_pipe.scores(images[:n]), pipe.scores(images[:n]).numpy()) <= 1e-5
    assert max_diff(onnx_pipe.predict_proba(images), pipe.predict_proba(images)) <= 1e-5
    assert [r["label"] for r in onnx_pipe.classify(images)] == [r["label"] for r in pipe.classify(images)]
    with pytest.raises(ValueError, match=r"images: expected uint8 \(N, 28, 28, 1\)"):
        onnx_pipe.classify(images[..., :0])


def test_int8_reports_size_and_quality(runs):
    reports = {f: json.loads((runs[f][1] / "quantize.json").read_text())
               for f in ("text2image", "captiongan", "imageclf")}
    t2i = reports["text2image"]
    assert t2i["fp32"]["file"] == "prior.onnx" and t2i["int8"]["file"] == "prior.int8.onnx"
    assert t2i["int8"]["bytes"] < t2i["fp32"]["bytes"] and t2i["fp32"]["examples"] > 0
    assert abs(t2i["int8"]["val_loss"] - t2i["fp32"]["val_loss"]) < 0.1
    pipe = inference.load(runs["text2image"][0], device="cpu")
    assert t2i["fp32"]["val_loss"] == pytest.approx(pipe.evaluate()["val_loss"], abs=1e-4)  # same split, same loss
    assert reports["captiongan"]["fp32"]["mean_abs_pixel_change_vs_torch"] < 0.01
    gan = reports["captiongan"]
    assert gan["int8"]["file"] == "generator.int8.onnx" and gan["int8"]["mean_abs_pixel_change_vs_torch"] < 20
    clf = reports["imageclf"]
    assert clf["fp32"]["images"] == clf["int8"]["images"] > 0
    assert abs(clf["int8"]["accuracy"] - clf["fp32"]["accuracy"]) <= 0.1
    assert load_onnx(runs["text2image"][1]).generate("top", 2, seed=0).shape == (2, 28, 28, 1)  # the int8 prior


BLOCK_TORCH = NO_TORCH + """
import warnings
import numpy as np
from genforge.cli import main
from genforge.onnx_pipelines import load
t2i, cgan, vq, clf, png, npz = sys.argv[1:7]
assert main(["sample", t2i, "--backend", "onnx", "--prompt", "a bar at the top", "--prompt", "the bottom bar",
             "--n", "4", "--top-k", "1", "--out", png]) == 0
assert main(["sample", cgan, "--backend", "onnx", "--prompt", "the top bar", "--n", "3", "--seed", "1",
             "--out", npz]) == 0
images = np.load(sys.argv[7])
print("codes:", load(vq).encode(images).tolist())
print("labels:", [r["label"] for r in load(clf).classify(images)])
assert "torch" not in sys.modules
"""


def test_runtime_runs_where_torch_cannot_be_imported(runs, tmp_path):
    png, npz, images = tmp_path / "grid.png", tmp_path / "cgan.npz", tmp_path / "images.npy"
    np.save(images, make_digit_like(n=2, seed=9)[0][..., None])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [str(runs[f][0]) for f in ("text2image", "captiongan", "vqvae", "imageclf")]
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args, str(png), str(npz), str(images)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Image.open(png).size == (4 * 30 + 2, 2 * 30 + 2)  # a row of 4 per prompt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        greedy = inference.load(runs["text2image"][0], device="cpu").generate(
            ["a bar at the top"] * 4 + ["the bottom bar"] * 4, 8, top_k=1)
    grid = np.asarray(Image.open(png))
    assert max_diff(grid[2:30, 2:30], greedy[0][..., 0]) <= 1 and max_diff(grid[32:60, 2:30], greedy[4][..., 0]) <= 1
    assert np.load(npz)["images"].shape == (3, 28, 28, 1)
    x = np.load(images)
    codes = inference.load(runs["vqvae"][0], device="cpu").encode(x).tolist()
    labels = [r["label"] for r in inference.load(runs["imageclf"][0], device="cpu").classify(x)]
    assert f"codes: {codes}" in proc.stdout and f"labels: {labels}" in proc.stdout


def test_sample_errors_name_the_parameter(runs, capsys):
    cases = [(["sample", str(runs["text2image"][0]), "--backend", "onnx"], "--prompt: a text-to-image export needs"),
             (["sample", str(runs["vqvae"][0]), "--backend", "onnx"], "'vqvae' export has nothing to sample"),
             (["sample", str(runs["captiongan"][0]), "--backend", "onnx", "--prompt", "top", "--guidance", "2"],
              "no guidance"),
             (["export", str(runs["vqvae"][0]), "--quantize", "int8", "--out", "x"], "does not apply to a vqvae run")]
    for args, msg in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (args, err)
