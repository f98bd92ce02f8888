"""Short texts: character n-grams in the hashed bag (data.char_ngrams, preset nbchar) and the Kim-2014
CNN over word embeddings (arch cnn, preset cnn)."""
import json
import math

import pytest
import torch

import genforge
from genforge.data.words import Featurizer, hashed_ngrams
from genforge.families import classifier as C
from genforge.models.classifier import ClassifierConfig, TextClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_plots(monkeypatch):
    """A tiny run's loss, ROC and confusion plots are most of its time; these tests read none of them."""
    from genforge.metrics import classification
    from genforge.monitor import Monitor
    for owner, name in ((classification, "plot_roc"), (classification, "plot_confusion"), (Monitor, "plot")):
        monkeypatch.setattr(owner, name, lambda *a, **k: None)


def test_char_ngrams_add_subwords_to_the_word_bag_and_stay_inside_each_text():
    texts = [["wonderful", "film"], ["awful"], []]
    words_only = hashed_ngrams(texts, 2, 1 << 20)
    both = hashed_ngrams(texts, 2, 1 << 20, (2, 5))
    for i in range(3):
        w = set(words_only.ids[words_only.offsets[i]:words_only.offsets[i + 1]].tolist())
        b = both.ids[both.offsets[i]:both.offsets[i + 1]].tolist()
        assert w <= set(b) and len(b) == len(set(b))  # the word n-grams are kept; the bag stays binary
        alone = hashed_ngrams([texts[i]], 2, 1 << 20, (2, 5))
        assert alone.ids.tolist() == b  # a text's features do not depend on its neighbours
    # <awful>: 6 + 5 + 4 + 3 character 2..5-grams, all distinct, plus the word itself
    assert both.offsets[2] - both.offsets[1] == 18 + 1
    assert both.offsets[3] == both.offsets[2]  # an empty text stays empty


def test_an_unseen_inflection_shares_character_ngrams_with_its_stem():
    f = Featurizer("ngram", ngram=1, buckets=1 << 20, char_ngrams=(3, 5))
    stem, inflected, other = (set(f.transform([t]).ids.tolist()) for t in ("wonderful", "wonderfully", "dull"))
    assert len(stem & inflected) >= 10 and not stem & other
    plain = Featurizer("ngram", ngram=1, buckets=1 << 20)
    assert not set(plain.transform(["wonderful"]).ids.tolist()) & set(plain.transform(["wonderfully"]).ids.tolist())
    again = Featurizer.from_dict(json.loads(json.dumps(f.to_dict())))
    assert again.char_ngrams == (3, 5) and again.transform(["wonderfully"]).ids.tolist() == sorted(inflected)


def test_bad_char_ngrams_and_cnn_widths_are_named():
    for bad in ("3,2", "0,4", "2"):
        with pytest.raises(ValueError, match="data.char_ngrams"):
            C._resolve("nbchar", {"data": {"char_ngrams": bad}}, None, False, C.RunDir("/tmp/unused-run"))
    with pytest.raises(ValueError, match="model.widths"):
        ClassifierConfig(arch="cnn", max_len=4, widths=(3, 5)).validate()


def cnn(pad="post", T=12, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ClassifierConfig(arch="cnn", vocab_size=40, num_classes=2, max_len=T, embed_dim=8, hidden=6, pad=pad, **kw)
    return TextClassifier(cfg).eval()


def padded(tokens, T, pad):
    """(1, T) ids with zeros before (pre) or after (post) `tokens`, and the (1,) length."""
    ids = torch.zeros(1, T, dtype=torch.long)
    at = slice(T - len(tokens), T) if pad == "pre" else slice(0, len(tokens))
    ids[0, at] = torch.tensor(tokens)
    return ids, torch.tensor([len(tokens)])


def test_cnn_starts_near_chance_and_ignores_padding():
    m = cnn()
    ids = torch.randint(2, 40, (8, 12), generator=torch.Generator().manual_seed(0))
    logits, loss = m(ids, torch.full((8,), 12), targets=torch.tensor([0, 1] * 4))
    assert logits.shape == (8, 1) and abs(loss.item() - math.log(2)) < 0.1
    assert m.body.out_dim == 6 * 3
    pre, longer = cnn("pre"), cnn("post", T=20)  # same seed: same weights
    tokens = [5, 9, 3, 7, 11, 2]  # longer than every width: every window counted lies on real tokens
    a = m(*padded(tokens, 12, "post"))[0]
    assert torch.allclose(a, pre(*padded(tokens, 12, "pre"))[0], atol=1e-6)
    assert torch.allclose(a, longer(*padded(tokens, 20, "post"))[0], atol=1e-6)
    short = [5, 9]  # shorter than every width: its one window per width, however much padding follows
    assert torch.allclose(m(*padded(short, 12, "post"))[0], longer(*padded(short, 20, "post"))[0], atol=1e-6)
    ids, lengths = padded([5, 9, 3, 7, 11, 2], 12, "post")
    noisy = ids.clone()
    noisy[0, 6:] = 17  # junk in the padding positions is masked out
    assert torch.allclose(m(ids, lengths)[0], m(noisy, lengths)[0], atol=1e-6)


def test_cnn_overfits_a_small_batch():
    m = cnn(dropout=0.0).train()
    g = torch.Generator().manual_seed(1)
    ids, y = torch.randint(1, 40, (16, 12), generator=g), torch.randint(0, 2, (16,), generator=g)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        loss = m(ids, torch.full((16,), 12), targets=y)[1]
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def short_reviews(path, n=80):
    """Two-word reviews whose class lives in the word stems; test texts use inflections never seen."""
    stems = {0: ["awful", "bore", "dull"], 1: ["wonder", "superb", "love"]}
    ends = ["ful", "d", "s", "ing"]
    rows = [{"text": f"film {stems[i % 2][i % 3]}{ends[i % 4]}", "label": i % 2} for i in range(n)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("preset", ["nbchar", "cnn"])
def test_short_text_presets_train_reload_and_classify(preset, tmp_path, no_plots):
    data = short_reviews(tmp_path / "short.jsonl")
    ov = {"data": {"path": str(data), "val_fraction": 0.25, "buckets": 1 << 14, "max_len": 8},
          "train": {"threads": 1, "batch_size": 16, "lr": 0.01}, "fit": {"epochs": 10, "evals_per_epoch": 1}}
    run, _ = C.train(preset, ov, out=str(tmp_path / preset), progress=False)
    assert json.loads((run.path / "eval" / "val" / "metrics.json").read_text())["accuracy"] == 1.0
    pipe = genforge.load(run.path)
    texts = ["film superbly", "film dullest", "film wonderment", "film awfully"]
    probs = pipe.predict_proba(texts)
    assert (genforge.load(run.path).predict_proba(texts) == probs).all()  # the reloaded run answers the same
    if preset == "nbchar":  # unseen words: the character n-grams of their stems decide
        assert probs.argmax(1).tolist() == [1, 0, 1, 0]  # (word n-grams alone see only "film" in them)


def benchmark():
    """benchmarks/classifier_short.py as a module (the benchmarks folder is no package)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parents[1] / "benchmarks" / "classifier_short.py"
    spec = importlib.util.spec_from_file_location("classifier_short_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_diversity_says_which_member_adds_to_the_first_on_validation():
    import numpy as np
    y = np.array([0, 1] * 50)

    def member(wrong, confidence):  # (100, 2): right with `confidence` except on `wrong`
        right = np.full(100, confidence)
        right[wrong] = 1 - confidence
        p = np.zeros((100, 2))
        p[np.arange(100), y], p[np.arange(100), 1 - y] = right, 1 - right
        return p

    first = member(range(0, 10), 0.9)  # wrong on texts 0..9
    other = member(range(10, 20), 0.9)  # wrong elsewhere: its errors differ
    d = benchmark().diversity([first, other, first.copy()], y, ["first", "other", "same"])
    assert d["first"]["val_accuracy"] == d["other"]["val_accuracy"] == 0.9
    assert d["same"]["error_correlation"] == pytest.approx(1.0) and d["same"]["oracle"] == 0.9
    assert d["other"]["error_correlation"] < 0 and d["other"]["oracle"] == 1.0
    assert d["other"]["blend_weight"] == 0.5 and d["other"]["blend_val_log_loss"] < d["same"]["blend_val_log_loss"]


def test_every_benchmark_member_resolves_to_a_valid_config():
    for name, (preset, overrides) in benchmark().MEMBERS.items():
        cfg = C._resolve(preset, overrides, None, False, C.RunDir("/tmp/unused-run"))
        for section, values in overrides.items():
            for key in values:
                assert getattr(cfg[section], key) is not None, f"{name}: {section}.{key}"
    cnn_cfg = C._resolve(*benchmark().MEMBERS["cnn-imdb"], None, False, C.RunDir("/tmp/unused-run"))
    assert cnn_cfg["model"].widths == (3,) and cnn_cfg["data"].pad == "pre"


def test_the_refit_route_weighs_members_on_their_validation_models(tmp_path, monkeypatch, no_plots):
    """The IMDB route (nbbag-b24-refit + nbbag-punct4-b24-refit) end to end on tiny data, in small tables:
    validation probabilities come from each member's validation-split model, test ones from the refit."""
    import gzip
    import sys

    import numpy as np
    from tests.conftest import make_reviews
    bench = benchmark()
    names = ["nbbag-b24-refit", "nbbag-punct4-b24-refit"]
    for name in names:  # the route's settings but 2^12 buckets and one epoch: seconds, not minutes
        preset, ov = bench.MEMBERS[name]
        bench.MEMBERS[name] = (preset, {**ov, "data": {**ov["data"], "buckets": 1 << 12}, "fit": {**ov["fit"], "epochs": 1}})
    for split, n, seed in (("train", 200, 0), ("test", 40, 1)):
        with gzip.open(tmp_path / f"{split}.jsonl.gz", "wt") as f:
            f.write("".join(json.dumps(r) + "\n" for r in make_reviews(n, seed)))
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["classifier_short.py", "--texts", "full", "--no-floor", "--members", ",".join(names),
                                      "--data", str(tmp_path), "--out", str(out)])
    bench.main()
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert rows["+".join(names) + " s1337"]["accuracy"] == 1.0
    val = C.read_labelled(str(out / "val.jsonl"))
    for name in names:
        run = out / f"{name}-s1337"
        saved = np.load(run / "probs.npz")
        honest = genforge.load(run / "checkpoints" / "validation.safetensors").predict_proba(val.texts)
        assert np.allclose(saved["val"], honest) and not np.allclose(saved["val"], genforge.load(run).predict_proba(val.texts))
    assert genforge.load(out / "ensemble-s1337").temperature == 1.0  # no temperature fitted on texts members trained on
