"""ONNX export of the hashed n-gram bags (nbbag, the default classifier preset, and fastText's bag): the
runtime's featurizer gives the training featurizer's ids, the probabilities match PyTorch's within 1e-5
(calibrated, binary and three classes, at several batch sizes and with texts that have no n-gram),
int8 stores the n-gram table in int8, and an ensemble is refused with a clear error."""
import json

import numpy as np
import pytest

from genforge import inference
from genforge.cli import main
from genforge.data.words import Featurizer
from genforge.export import export
from genforge.onnx_pipelines import OnnxClassifierPipeline, load as load_onnx

from .conftest import make_reviews

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["superb, loved it!", "awful and DULL <br /> film", "Ünïcödé café — naïve… 東京 ok", "don't won't it's",
         "!?", "a " * 60 + "wonderful", "x", "the movie was the movie was the movie", "tab\tnew\nline  spaces"]


_BAGS: dict = {}


def bag_runs(factory) -> dict:
    """{preset: (run, export)}: nbbag on two classes (exported with int8 too), bag on three; made once per
    session (tests/test_serve_onnx.py serves the nbbag export)."""
    if _BAGS:
        return _BAGS
    root = factory.mktemp("bags")
    for preset, labels, extra in (("nbbag", (0, 1), ["--data.buckets=16384"]),
                                  ("bag", (0, 1, 2), ["--data.ngram=3", "--data.buckets=4096"])):
        data = root / f"{preset}.jsonl"
        data.write_text("\n".join(json.dumps(r) for r in make_reviews(90, labels=labels)) + "\n")
        run = root / preset
        assert main(["train", "classifier", "--data", str(data), "--preset", preset, "--out", str(run),
                     "--train.threads=1", "--fit.epochs=3", "--no-progress"] + extra) == 0
        _BAGS[preset] = run, export(str(run), quantize="int8" if preset == "nbbag" else None)
    return _BAGS


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    return bag_runs(tmp_path_factory)


@pytest.mark.parametrize("punctuation,n", [(False, 2), (True, 3)])
def test_runtime_featurizer_gives_the_training_ids(punctuation, n):
    f = Featurizer("ngram", ngram=n, buckets=1 << 22, punctuation=punctuation, max_chars=40)
    pipe = OnnxClassifierPipeline.__new__(OnnxClassifierPipeline)
    pipe.featurizer = f.to_dict()
    ours, ref = pipe.inputs(TEXTS), f.transform(TEXTS)
    assert np.array_equal(ours["input_ids"], ref.ids.numpy())
    assert np.array_equal(ours["offsets"], ref.offsets[:-1].numpy())
    assert ours["input_ids"].min() >= 0 and ours["input_ids"].max() < 1 << 22
    sizes = np.diff(ref.offsets.numpy())
    assert sizes[TEXTS.index("!?")] == (3 if punctuation else 0)  # "!", "?", "! ?" or no word at all


@pytest.mark.parametrize("preset", ["nbbag", "bag"])
def test_bag_probabilities_match_torch(bags, preset):
    run, out = bags[preset]
    pipe, onnx_pipe = inference.load(run, device="cpu"), load_onnx(out, model="model.onnx")
    manifest = json.loads((out / "genforge_export.json").read_text())
    assert manifest["featurizer"]["kind"] == "ngram" and manifest["temperature"] == pipe.temperature
    for texts in (TEXTS, TEXTS[:1], ["!?"], ["!?", "superb", "!?"]):  # batch sizes 9, 1, 3; empty bags
        assert np.abs(onnx_pipe.scores(texts) - pipe.scores(texts).numpy()).max() <= 1e-5
        assert np.abs(onnx_pipe.predict_proba(texts) - pipe.predict_proba(texts)).max() <= 1e-5
    assert [r["label"] for r in onnx_pipe.classify(TEXTS)] == [r["label"] for r in pipe.classify(TEXTS)]
    assert onnx_pipe.predict_proba(TEXTS).shape == (len(TEXTS), len(pipe.labels))
    if pipe.temperature != 1.0:  # the calibration is applied, not only carried
        raw = pipe.predict_proba(TEXTS, calibrated=False)
        assert np.abs(onnx_pipe.predict_proba(TEXTS) - raw).max() > 1e-4
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        onnx_pipe.classify([""])


def test_bag_int8_stores_the_table_in_int8(bags):
    run, out = bags["nbbag"]
    report = json.loads((out / "quantize.json").read_text())
    assert report["int8"]["bytes"] < 0.6 * report["fp32"]["bytes"]  # 16384 fp32 weights -> int8
    assert abs(report["int8"]["accuracy"] - report["fp32"]["accuracy"]) <= 0.05
    import onnx
    ops = {n.op_type for n in onnx.load(str(out / "model.int8.onnx")).graph.node}
    assert "DequantizeLinear" in ops
    int8, fp32 = load_onnx(out), load_onnx(out, model="model.onnx")
    assert np.abs(int8.predict_proba(TEXTS) - fp32.predict_proba(TEXTS)).max() <= 0.05


def test_an_ensemble_is_refused_with_a_clear_error(bags, tmp_path, capsys):
    runs = [str(bags["nbbag"][0])] * 2
    assert main(["ensemble", *runs, "--out", str(tmp_path / "ens")]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "ens")]) == 2
    err = capsys.readouterr().err
    assert "an ensemble does not export to ONNX; export its member runs" in err and err.count("\n") == 1
    assert not (tmp_path / "ens" / "onnx").exists()
