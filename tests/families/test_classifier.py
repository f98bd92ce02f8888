"""The classifier family end to end on tiny synthetic data: train, evaluate, classify, resume, CV."""
import csv
import json

import numpy as np
import pytest
import torch

import genforge
from genforge import checkpoint
from genforge.families import classifier as C
from genforge.families import gpt
from tests.conftest import make_reviews

FAST = {"train": {"threads": 1, "batch_size": 16}, "fit": {"epochs": 4, "tune": False}}


def overrides(path, **sections):
    out = {k: dict(v) for k, v in FAST.items()}
    out.setdefault("data", {})["path"] = str(path)
    for name, values in sections.items():
        out.setdefault(name, {}).update(values)
    return out


def test_nbbag_learns_and_writes_metrics_and_plots(reviews, tmp_path):
    run, result = C.train("nbbag", overrides(reviews, data={"buckets": 4096}), out=str(tmp_path / "r"),
                          progress=False)
    assert result.stopped == "max_iters" and result.step == 4 * 7  # 108 train texts / 16 -> 7 steps per epoch
    m = json.loads((run.path / "eval" / "val" / "metrics.json").read_text())
    assert m["accuracy"] == 1.0 and m["n"] == 12
    assert {"f1", "roc_auc", "ece", "confusion_matrix", "per_class", "macro"} <= m.keys()
    assert (run.path / "eval" / "val" / "roc.png").exists() and (run.path / "eval" / "val" / "confusion.png").exists()
    pipe = genforge.load(run.path)
    assert pipe.family == "classifier" and pipe.labels == ["0", "1"]
    out = pipe.classify(["superb wonderful film", "awful boring dull"])
    assert [o["label"] for o in out] == ["1", "0"]
    assert abs(sum(out[0]["probs"].values()) - 1) < 1e-6 and set(out[0]["probs"]) == {"0", "1"}


def test_training_is_deterministic_and_checkpoints_round_trip(reviews, tmp_path):
    ov = overrides(reviews, fit={"epochs": 1})
    C.train("lstm", ov, out=str(tmp_path / "a"), progress=False)
    C.train("lstm", ov, out=str(tmp_path / "b"), progress=False)
    ta, _ = checkpoint.load(tmp_path / "a" / "checkpoints" / "best.safetensors", prefix="module.model")
    tb, _ = checkpoint.load(tmp_path / "b" / "checkpoints" / "best.safetensors", prefix="module.model")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    texts = ["the plot was superb", "dull film"]
    p1 = genforge.load(tmp_path / "a").predict_proba(texts)
    p2 = genforge.load(tmp_path / "a" / "checkpoints" / "best.safetensors").predict_proba(texts)
    assert np.array_equal(p1, p2)


def test_resume_continues_to_the_same_weights(reviews, tmp_path):
    small = {"buckets": 4096}
    C.train("bag", overrides(reviews, data=small, fit={"epochs": 2, "select": "last"}), out=str(tmp_path / "full"),
            progress=False)
    # the same schedule (14 steps), stopped by a tiny time budget after its first step, then resumed
    steps = {"max_iters": 14, "eval_interval": 7}
    C.train("bag", overrides(reviews, data=small, fit={"epochs": 0, "select": "last"},
                             train={**steps, "max_seconds": 1e-9}), out=str(tmp_path / "r"), progress=False)
    run, result = C.train("bag", overrides(reviews, data=small, train={**steps, "max_seconds": 0}),
                          out=str(tmp_path / "r"), resume=True, progress=False)
    assert result.step == 14
    a, _ = checkpoint.load(tmp_path / "full" / "checkpoints" / "last.safetensors", prefix="module.model")
    b, _ = checkpoint.load(tmp_path / "r" / "checkpoints" / "last.safetensors", prefix="module.model")
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_multiclass_string_labels_from_csv_with_class_weights(tmp_path):
    rows = make_reviews(150, labels=("bad", "good", "meh"))
    with open(tmp_path / "r.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["review", "sentiment"])
        w.writeheader()
        w.writerows({"review": r["text"], "sentiment": r["label"]} for r in rows)
    run, _ = C.train("bag", overrides(tmp_path / "r.csv", data={"text_field": "review", "label_field": "sentiment",
                                                               "buckets": 4096},
                                      fit={"class_weights": "balanced", "epochs": 15}, train={"lr": 0.05}),
                     out=str(tmp_path / "run"), progress=False)
    pipe = genforge.load(run.path)
    assert pipe.labels == ["bad", "good", "meh"]
    assert pipe.classify(["superb loved wonderful"])[0]["label"] == "good"
    m = json.loads((run.path / "eval" / "val" / "metrics.json").read_text())
    assert len(m["confusion_matrix"]) == 3 and m["accuracy"] >= 0.8


def test_early_stopping_on_validation(reviews, tmp_path):
    # lr 0: validation loss never improves after the first evaluation, so patience 2 stops at the third
    _, result = C.train("bag", overrides(reviews, data={"buckets": 4096},
                                         train={"lr": 0.0, "min_lr": 0.0, "patience": 2},
                                         fit={"epochs": 10}), out=str(tmp_path / "r"), progress=False)
    assert result.stopped == "early_stopping" and result.step == 3 * 7


def test_init_from_a_gpt_run(reviews, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(r["text"] for r in make_reviews(60)))
    gpt.train(None, {"data": {"path": str(corpus)}, "model": {"n_layer": 1, "n_head": 2, "n_embd": 16,
                                                              "block_size": 32},
                     "train": {"max_iters": 4, "eval_interval": 4, "batch_size": 4, "dtype": "fp32", "threads": 1}},
              out=str(tmp_path / "gpt"), progress=False)
    run, _ = C.train(None, overrides(reviews, data={"max_len": 64}, fit={"epochs": 1}), out=str(tmp_path / "clf"),
                     init_from=str(tmp_path / "gpt"), progress=False)
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["config"]["model"]["arch"] == "gpt" and cfg["config"]["model"]["max_len"] == 32  # the GPT's context
    pre, _ = checkpoint.load(tmp_path / "gpt" / "checkpoints" / "best.safetensors", prefix="module.model")
    post, _ = checkpoint.load(run.path / "checkpoints" / "best.safetensors", prefix="module.model.body.gpt")
    assert pre.keys() == post.keys() and not all(torch.equal(pre[k], post[k]) for k in pre)  # fine-tuned
    assert genforge.load(run.path).classify(["loved it"])[0]["label"] in ("0", "1")


def test_cross_validation_reports_mean_and_std(reviews, tmp_path):
    res = C.cross_validate("nbbag", overrides(reviews, data={"buckets": 4096}), folds=3, out=str(tmp_path / "cv"))
    accs = [f["accuracy"] for f in res["per_fold"]]
    assert res["summary"]["accuracy"] == pytest.approx({"mean": np.mean(accs), "std": np.std(accs)})
    assert min(accs) >= 0.9
    assert {"f1", "roc_auc", "ece", "macro.f1"} <= res["summary"].keys()
    assert sum(f["n"] for f in res["per_fold"]) == 120  # every example held out exactly once
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["folds"] == 3


def test_bad_inputs(reviews, tmp_path):
    run, _ = C.train("nbbag", overrides(reviews, data={"buckets": 4096}, fit={"epochs": 1}), out=str(tmp_path / "r"),
                     progress=False)
    pipe = genforge.load(run.path)
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        pipe.classify(["fine", "  "])
    with pytest.raises(ValueError, match="list of strings"):
        pipe.classify("just one string")
    unseen = tmp_path / "unseen.jsonl"
    unseen.write_text('{"text": "superb", "label": 1}\n{"text": "meh", "label": 5}\n')
    with pytest.raises(ValueError, match=r"'5' never seen in training \(first at .*unseen.jsonl:2\)"):
        pipe.evaluate(str(unseen))
    one = tmp_path / "one.jsonl"
    one.write_text("\n".join(json.dumps({"text": f"text {i}", "label": 1}) for i in range(10)))
    with pytest.raises(ValueError, match="only one class"):
        C.train("nbbag", overrides(one), out=str(tmp_path / "one"), progress=False)
    with pytest.raises(ValueError, match="no training data"):
        C.train("nbbag", {}, out=str(tmp_path / "none"), progress=False)
    with pytest.raises(ValueError, match="unknown preset 'lstmm'.*did you mean 'lstm'"):
        C.train("lstmm", overrides(reviews), out=str(tmp_path / "p"), progress=False)


def test_real_imdb_subset(datasets, tmp_path):
    """The shared IMDB copy: a bigram NB model on 4,000 reviews scores well on 2,000 held-out ones."""
    import gzip
    rows = {split: [json.loads(l) for l in gzip.open(datasets / "imdb" / f"{split}.jsonl.gz", "rt")]
            for split in ("train", "test")}
    assert len(rows["train"]) == len(rows["test"]) == 25000
    for split, n in (("train", 2000), ("test", 1000)):  # negatives come first, then positives
        sub = rows[split][:n] + rows[split][-n:]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in sub))
    run, _ = C.train("nbbag", {"data": {"path": str(tmp_path / "train.jsonl"), "test_path": str(tmp_path / "test.jsonl"),
                                        "ngram": 2, "buckets": 1 << 20},
                               "train": {"threads": 1}, "fit": {"epochs": 2, "tune": False}}, out=str(tmp_path / "r"), progress=False)
    m = json.loads((run.path / "eval" / "test" / "metrics.json").read_text())
    assert m["n"] == 2000 and m["accuracy"] > 0.84 and m["roc_auc"] > 0.9


def test_ensemble_averages_member_probabilities(reviews, tmp_path):
    a, _ = C.train("nbbag", overrides(reviews, data={"buckets": 4096}, fit={"epochs": 1}), out=str(tmp_path / "a"),
                   progress=False)
    b, _ = C.train("lstm", overrides(reviews, fit={"epochs": 1}), out=str(tmp_path / "b"), progress=False)
    C.ensemble([str(a.path), str(b.path)], str(tmp_path / "e"), weights=[3, 1])
    texts = ["superb film", "dull and boring"]
    pa, pb = genforge.load(a.path).predict_proba(texts), genforge.load(b.path).predict_proba(texts)
    e = genforge.load(tmp_path / "e")
    assert e.family == "classifier" and e.labels == ["0", "1"]
    assert np.allclose(e.predict_proba(texts), 0.75 * pa + 0.25 * pb, atol=1e-6)
    assert e.classify(texts)[0]["label"] == "1"
    with pytest.raises(ValueError, match="2 non-negative numbers"):
        C.ensemble([str(a.path), str(b.path)], str(tmp_path / "f"), weights=[1])


def test_refit_trains_again_on_train_and_validation_keeping_the_validation_temperature(reviews, tmp_path):
    val = tmp_path / "val.jsonl"  # validation texts carry a word no training text has
    val.write_text("".join(json.dumps({"text": f"zanzibar {r['text']}", "label": r["label"]}) + "\n"
                           for r in make_reviews(20, seed=1)))
    run, result = C.train("nbbag", overrides(reviews, data={"buckets": 4096, "val_path": str(val)},
                                             fit={"refit": True}), out=str(tmp_path / "r"), progress=False)
    assert result.step == 4 * 9  # 120 + 20 texts / 16 -> 9 steps per epoch, the validation run's 4 epochs
    ckpts = run.path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.safetensors", "validation.safetensors"]
    refit, validation = genforge.load(run.path), genforge.load(ckpts / "validation.safetensors")
    assert refit.meta["refit"]["texts"] == 140 and refit.temperature == validation.temperature != 1.0
    [row] = refit.featurizer.transform(["zanzibar"]).ids.tolist()
    assert validation.model.body.w[row].abs().sum() == 0 and refit.model.body.w[row].abs().sum() > 0
    assert json.loads((run.path / "eval" / "val" / "metrics.json").read_text())["n"] == 20  # the validation model's
    with pytest.raises(ValueError, match="fit.refit=true needs a validation split"):
        C.train("nbbag", overrides(reviews, data={"val_fraction": 0.0}, fit={"refit": True}),
                out=str(tmp_path / "none"), progress=False)
