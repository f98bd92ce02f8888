"""`genforge export` and the torch-free ONNX runtime: parity with PyTorch (fp32) per family at two shapes,
greedy continuations, the genai files, int8 quantisation, a GPT-2 round trip, the runtime in a process
that cannot import torch, and the errors users see."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genforge import inference
from genforge.cli import main
from genforge.export import export
from genforge.onnx_pipelines import load as load_onnx

from .conftest import NO_TORCH, TEXT, make_digit_like, make_reviews

pytestmark = pytest.mark.usefixtures("one_thread")

GPT_TINY = ["--model.n_layer=2", "--model.n_head=2", "--model.n_embd=32", "--model.block_size=16",
            "--train.batch_size=4", "--train.max_iters=8", "--train.eval_interval=8", "--train.dtype=fp32",
            "--train.threads=1", "--no-progress"]
# the default architecture (rotary, QK-norm, relu2, RMSNorm) on characters; GPT-2's (learned positions,
# LayerNorm, GELU, no biases) on BPE, exported with --quantize int8 and to GPT-2 files
GPT_ARCHS = {"rope": ["--model.activation=relu2"],
             "learned": ["--model.pos=learned", "--model.norm=layernorm", "--model.qk_norm=false",
                         "--model.activation=gelu_tanh", "--model.bias=false", "--data.tokenizer=bpe",
                         "--data.vocab_size=300"]}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENFORGE_CACHE", str(root / "cache"))
        torch.set_num_threads(1)
        yield root


def train_and_export(workdir: Path, arch: str, quantize: list[str]) -> tuple[Path, Path]:
    """(run, export dir) of a few-step GPT of this architecture."""
    corpus = workdir / "corpus.txt"
    corpus.write_text(TEXT)
    run = workdir / f"gpt-{arch}"
    assert main(["train", "gpt", "--data", str(corpus), "--out", str(run), "--seed", "0"] + GPT_TINY + GPT_ARCHS[arch]) == 0
    assert main(["export", str(run)] + quantize) == 0  # default --out: RUN/onnx
    return run, run / "onnx"


@pytest.fixture(scope="module")
def gpt_rope(workdir):
    return train_and_export(workdir, "rope", [])


@pytest.fixture(scope="module")
def gpt_learned(workdir):
    return train_and_export(workdir, "learned", ["--quantize", "int8"])


@pytest.fixture(params=["gpt_rope", "gpt_learned"])
def gpt_export(request):
    return request.getfixturevalue(request.param)


def max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_gpt_parity_at_two_shapes_with_the_cache(gpt_export):
    run, out = gpt_export
    manifest = json.loads((out / "genforge_export.json").read_text())
    onnx_pipe, pipe = load_onnx(out, model=manifest["fp32_model"]), inference.load(run, device="cpu")
    V = pipe.model.config.vocab_size
    ids = torch.randint(0, V, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = pipe.model(ids)[0].numpy()  # (3, 9, V)
    assert max_diff(onnx_pipe.logits(ids[:1, :5].numpy()), ref[:1, :5]) <= 1e-4  # batch 1, 5 tokens, no past
    logits, past = onnx_pipe.forward(ids[:, :6].numpy(), onnx_pipe.empty_past(3), 0)  # batch 3: prefill 6 ...
    assert max_diff(logits, ref[:, :6]) <= 1e-4
    logits, present = onnx_pipe.forward(ids[:, 6:].numpy(), past, 6)  # ... then 3 more after the cache
    assert max_diff(logits, ref[:, 6:]) <= 1e-4
    c = pipe.model.config
    assert [p.shape for p in present] == [(3, c.n_head, 9, c.n_embd // c.n_head)] * (2 * c.n_layer)
    inputs = {i.name: i.shape for i in onnx_pipe.sess.get_inputs()}
    assert inputs["input_ids"] == ["batch_size", "sequence_length"]
    assert inputs["past_key_values.1.value"] == ["batch_size", c.n_head, "past_sequence_length", c.n_embd // c.n_head]


def test_gpt_greedy_continuation_identical_past_the_context(gpt_export):
    run, out = gpt_export
    manifest = json.loads((out / "genforge_export.json").read_text())
    onnx_pipe, pipe = load_onnx(out, model=manifest["fp32_model"]), inference.load(run, device="cpu")
    for prompt in ("First Citizen", ""):  # 40 new tokens: the 16-token context restarts twice
        ours = onnx_pipe.generate(prompt, max_new_tokens=40, temperature=0)
        assert ours == pipe.generate(prompt, max_new_tokens=40, temperature=0)
        assert len(ours) > len(prompt)
    kw = dict(max_new_tokens=20, temperature=1.0, top_k=5, top_p=0.9)
    assert onnx_pipe.generate("All", seed=3, **kw) == onnx_pipe.generate("All", seed=3, **kw)
    with pytest.raises(ValueError, match="temperature"):
        onnx_pipe.generate("All", temperature=-1)


def test_gpt_genai_config_and_tokenizer_match_the_graph(gpt_export):
    from tokenizers import Tokenizer
    run, out = gpt_export
    cfg = json.loads((out / "genai_config.json").read_text())["model"]
    dec = cfg["decoder"]
    pipe = inference.load(run, device="cpu")
    c = pipe.model.config
    assert (dec["num_hidden_layers"], dec["num_attention_heads"], dec["head_size"], cfg["vocab_size"]) == (
        c.n_layer, c.n_head, c.n_embd // c.n_head, c.vocab_size)
    sess = load_onnx(out).sess
    names = {i.name for i in sess.get_inputs()}
    assert {dec["inputs"][k] for k in ("input_ids", "attention_mask", "position_ids")} <= names
    for i in range(c.n_layer):
        assert dec["inputs"]["past_key_names"] % i in names and dec["inputs"]["past_value_names"] % i in names
        assert dec["outputs"]["present_key_names"] % i in {o.name for o in sess.get_outputs()}
    hf = Tokenizer.from_file(str(out / "tokenizer.json"))
    text = "Before we proceed, hear me.\n"
    assert hf.encode(text, add_special_tokens=False).ids == pipe.tokenizer.encode(text)
    assert hf.decode(pipe.tokenizer.encode(text)) == text


@pytest.fixture(scope="module")
def gan_export(workdir):
    images, labels = make_digit_like()
    data = workdir / "digits.npz"
    np.savez(data, images=images, labels=labels)
    run = workdir / "gan"
    assert main(["train", "gan", "--data", str(data), "--out", str(run), "--preset", "cdcgan", "--no-progress",
                 "--model.g_width=8", "--model.d_width=4", "--model.z_dim=16", "--train.batch_size=8",
                 "--train.max_iters=2", "--train.eval_interval=2", "--train.dtype=fp32", "--train.threads=1",
                 "--gan.monitor_samples=0"]) == 0
    assert main(["export", str(run), "--out", str(workdir / "gan-onnx")]) == 0
    return run, workdir / "gan-onnx"


def test_gan_generator_parity_at_two_batch_sizes(gan_export):
    run, out = gan_export
    onnx_pipe, pipe = load_onnx(out), inference.load(run, device="cpu")
    assert onnx_pipe.num_classes == 4 and onnx_pipe.image_size == 28
    for n in (3, 7):
        z = np.random.default_rng(n).standard_normal((n, 16)).astype(np.float32)
        labels = np.arange(n) % 4
        with torch.no_grad():
            ref = pipe.g(torch.from_numpy(z), torch.from_numpy(labels)).numpy()  # (n, 1, 28, 28)
        assert max_diff(onnx_pipe.raw(z, labels), ref) <= 1e-5
    z = np.random.default_rng(0).standard_normal((5, 16))
    assert np.array_equal(onnx_pipe.generate(5, z=z, labels=2), pipe.generate(5, z=torch.from_numpy(z).float(), labels=2))
    with pytest.raises(ValueError, match="labels must be in 0..3"):
        onnx_pipe.generate(2, labels=4)


@pytest.fixture(scope="module")
def classifier_runs(workdir):
    data = workdir / "reviews.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in make_reviews()) + "\n")
    runs = {}
    for preset, extra in (("transformer", ["--model.embed_dim=16", "--model.n_head=2", "--model.n_layer=1",
                                           "--data.max_len=24"]),
                          ("lstm", ["--data.max_len=12", "--model.hidden=8"]),
                          ("cnn", ["--data.max_len=12", "--model.embed_dim=16"])):
        runs[preset] = workdir / f"clf-{preset}"
        assert main(["train", "classifier", "--data", str(data), "--preset", preset, "--out", str(runs[preset]),
                     "--train.threads=1", "--fit.epochs=2", "--data.vocab_size=200", "--no-progress"] + extra) == 0
    exports = {p: export(str(runs[p]), quantize="int8" if p == "lstm" else None) for p in runs}
    return runs, exports


@pytest.mark.parametrize("preset", ["transformer", "lstm", "cnn"])
def test_classifier_parity_and_featurizer(classifier_runs, preset):
    runs, exports = classifier_runs
    out = exports[preset]
    onnx_pipe, pipe = load_onnx(out, model="model.onnx"), inference.load(runs[preset], device="cpu")
    texts = ["superb, loved it", "awful and dull <br /> film", "!?", "a " * 40 + "wonderful", "x"]
    ours = onnx_pipe.features(texts)
    feats = pipe.featurizer.transform(texts)
    assert np.array_equal(ours[0], feats.ids.numpy()) and np.array_equal(ours[1], feats.lengths.numpy())
    assert max_diff(onnx_pipe.scores(texts), pipe.scores(texts).numpy()) <= 1e-4
    assert max_diff(onnx_pipe.scores(texts[:2]), pipe.scores(texts[:2]).numpy()) <= 1e-4  # a second batch size
    ids, lengths = ours[0][:, :8], np.minimum(ours[1], 8)  # a second sequence length
    with torch.no_grad():
        ref = pipe.model(torch.from_numpy(ids), torch.from_numpy(lengths))[0].numpy()
    assert max_diff(onnx_pipe.sess.run(None, {"input_ids": ids, "lengths": lengths})[0], ref) <= 1e-4
    assert max_diff(onnx_pipe.predict_proba(texts), pipe.predict_proba(texts)) <= 1e-5
    assert [r["label"] for r in onnx_pipe.classify(texts)] == [r["label"] for r in pipe.classify(texts)]
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        onnx_pipe.classify(["fine", " "])
    if preset == "lstm":  # --quantize int8: the runtime's default file; accuracy of both files side by side
        report = json.loads((out / "quantize.json").read_text())
        assert report["int8"]["bytes"] > 0 and report["fp32"]["bytes"] > 0 and load_onnx(out).sess is not None
        assert json.loads((out / "genforge_export.json").read_text())["model"] == "model.int8.onnx"
        assert abs(report["int8"]["accuracy"] - report["fp32"]["accuracy"]) <= 0.05


def test_int8_quantisation_reports_size_and_loss(gpt_learned, gpt_rope):
    run, out = gpt_learned
    assert not (gpt_rope[1] / "quantize.json").exists() and not (gpt_rope[1] / "model.int8.onnx").exists()
    report = json.loads((out / "quantize.json").read_text())
    assert report["fp32"]["file"] == "model.onnx" and report["int8"]["file"] == "model.int8.onnx"
    assert report["int8"]["bytes"] < report["fp32"]["bytes"]
    assert report["fp32"]["tokens"] == report["int8"]["tokens"] > 0
    assert abs(report["int8"]["val_loss"] - report["fp32"]["val_loss"]) < 0.1
    pipe = inference.load(run, device="cpu")
    assert report["fp32"]["val_loss"] == pytest.approx(-np.log(1 / pipe.model.config.vocab_size), rel=0.5)
    assert load_onnx(out).generate("All", max_new_tokens=10, temperature=0).startswith("All")


def test_gpt2_round_trip_through_hf_import_and_transformers(gpt_learned, gpt_rope, tmp_path):
    run, out = gpt_learned[0], tmp_path / "hf"
    with pytest.raises(ValueError, match=r"GPT-2 cannot express model.pos='rope'.*model.qk_norm=True"):
        export(str(gpt_rope[0]), "hf", str(out))
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0
    pipe, back = inference.load(run, device="cpu"), inference.load(f"hf:{out}", device="cpu")
    ids = torch.tensor([pipe.tokenizer.encode("First Citizen:\nBefore we")])
    with torch.no_grad():
        ref = pipe.model(ids)[0]
        assert max_diff(back.model(ids)[0], ref) <= 1e-5
    assert back.generate("All", max_new_tokens=12, temperature=0) == pipe.generate("All", max_new_tokens=12,
                                                                                     temperature=0)
    from transformers import GPT2LMHeadModel
    hf = GPT2LMHeadModel.from_pretrained(str(out)).eval()
    with torch.no_grad():
        assert max_diff(hf(ids).logits, ref) <= 1e-5


BLOCK_TORCH = NO_TORCH + """
from genforge.cli import main
from genforge.onnx_pipelines import load
gpt, gan, clf, png = sys.argv[1:5]
assert main(["sample", gpt, "--backend", "onnx", "--prompt", "First", "--max-new-tokens", "20", "--temperature", "0"]) == 0
assert main(["sample", gan, "--backend", "onnx", "--n", "8", "--out", png, "--seed", "1"]) == 0
print("labels:", [r["label"] for r in load(clf).classify(["superb, loved it", "awful and dull"])])
assert "torch" not in sys.modules
"""


def test_runtime_runs_where_torch_cannot_be_imported(gpt_rope, gan_export, classifier_runs, tmp_path):
    run, out = gpt_rope
    clf = classifier_runs[1]["transformer"]
    png = tmp_path / "grid.png"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH, str(run), str(gan_export[1]), str(clf), str(png)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    pipe = inference.load(classifier_runs[0]["transformer"], device="cpu")
    expected = [r["label"] for r in pipe.classify(["superb, loved it", "awful and dull"])]
    greedy = inference.load(run, device="cpu").generate("First", max_new_tokens=20, temperature=0)
    assert greedy in proc.stdout and f"labels: {expected}" in proc.stdout
    from PIL import Image
    assert Image.open(png).size == (8 * 30 + 2, 30 + 2)


def test_errors_name_the_parameter(gpt_rope, gan_export, classifier_runs, tmp_path, capsys):
    run, out = gpt_rope
    cases = [
        (["export", str(run), "--format", "tflite"], "--format 'tflite': expected one of onnx, hf"),
        (["export", str(run), "--quantize", "int4"], "--quantize 'int4': only int8"),
        (["export", str(run)], "exists and is not empty; pass --overwrite"),
        (["export", str(run), "--out", str(run), "--overwrite"], "replaces only an earlier genforge export"),
        (["export", str(tmp_path / "nothing")], "run not found"),
        (["sample", str(tmp_path), "--backend", "onnx"], "no genforge_export.json"),
    ]
    for args, msg in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (args, err)
    assert (run / "checkpoints" / "best.safetensors").exists()  # --overwrite never touched the run
    from genforge.onnx_pipelines import require
    with pytest.raises(ValueError, match=r"no_such_runtime not installed: pip install 'genforge\[export\]'"):
        require("onnx", "no_such_runtime")
    gan_run, gan_out = gan_export
    (gan_out / "stale.txt").write_text("from an earlier export")
    assert main(["export", str(gan_run), "--out", str(gan_out), "--overwrite"]) == 0  # an earlier export is replaced
    assert not (gan_out / "stale.txt").exists() and (gan_out / "generator.onnx").exists()
