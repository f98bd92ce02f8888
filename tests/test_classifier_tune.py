"""Tuning on validation (families/tune.py), row-wise AdamW, the feature cache and featurize-once CV."""
import json

import torch

import genforge
from genforge.cli import main
from genforge.data import featcache
from genforge.data.words import Featurizer
from genforge.families import classifier as C
from genforge.families import tune
from genforge.models.classifier import ClassifierConfig, TextClassifier
from genforge.trainer import TrainConfig
from tests.conftest import make_reviews

TUNE = {"train": {"threads": 1, "batch_size": 16}, "data": {"buckets": 4096},
        "fit": {"tune_trials": 2, "tune_budget": 6}}


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _ov(train, **extra):
    out = {k: dict(v) for k, v in TUNE.items()}
    out["data"]["path"] = str(train)
    for section, values in extra.items():
        out.setdefault(section, {}).update(values)
    return out


def test_reached_rows_train_exactly_as_dense_adamw_and_write_the_full_table_back():
    cfg = ClassifierConfig(arch="bag", embed_dim=0, nb=True, vocab_size=1000, num_classes=2)
    tc = TrainConfig(lr=1e-2, weight_decay=0.1)
    g = torch.Generator().manual_seed(0)
    ids, offsets = torch.randint(0, 1000, (200,), generator=g), torch.arange(0, 200, 10)
    y = torch.randint(0, 2, (20,), generator=g)
    states = []
    for compact in (False, True):
        model = TextClassifier(cfg)
        with torch.no_grad():
            model.body.r.copy_(torch.linspace(-1, 1, 1000)[:, None])
        reached = C.ReachedRows(model.body, ids.unique()) if compact else None
        opts = C.optimizers(model, tc, reached)
        assert ("rows" in opts) == compact
        for step in range(6):
            if compact:
                reached.train_mode()
                assert model.body.w.shape == (len(ids.unique()), 1)  # (M, K) while it trains
            for o in opts.values():
                o.zero_grad(set_to_none=True)
            model(reached.ids(ids) if compact else ids, offsets, targets=y)[1].backward()
            for o in opts.values():
                o.step()
            if compact and step == 2:  # a validation pass or a checkpoint in between changes nothing
                reached.full_mode()
        if compact:
            reached.full_mode()
        states.append(model.state_dict())
    for k in states[0]:
        assert states[0][k].shape == states[1][k].shape and torch.allclose(states[0][k], states[1][k], atol=1e-7), k
    w = states[1]["body.w"]
    unseen = torch.ones(1000, dtype=torch.bool)
    unseen[ids] = False
    assert w[unseen].abs().max() == 0 and w[~unseen].abs().min() > 0


def test_candidates_start_from_the_preset_and_skip_fixed_or_missing_axes():
    cfg = C._resolve("nbbag", {}, None, False, None)
    a = tune.candidates(cfg, 5, seed=1)
    assert a[0] == {"data.ngram": 3, "model.nb_alpha": 1.0, "train.weight_decay": 0.0, "fit.l1": 0.0}
    assert len(a) == 5 and len({json.dumps(c, sort_keys=True) for c in a}) == 5
    assert a == tune.candidates(cfg, 5, seed=1) and a != tune.candidates(cfg, 5, seed=2)
    assert all("data.ngram" not in c for c in tune.candidates(cfg, 5, 1, fixed={"data.ngram"}))
    old = tune.SPACE
    try:  # an axis over a field this config lacks is left out, not an error
        tune.SPACE = old + [[{"data.no_such_field": 0}, {"data.no_such_field": 4}]]
        assert tune.candidates(cfg, 12, 1) == tune.candidates(cfg, 12, 1, fixed={"data.no_such_field"})
    finally:
        tune.SPACE = old


def test_successive_halving_keeps_the_better_half_and_respects_the_budget():
    cfg = C._resolve("nbbag", {"fit": {"tune_trials": 6, "tune_budget": 32}}, None, False, None)
    seen = []

    def trial(c):  # lower is better: ngram 2 and alpha 0.5 win, more epochs help
        seen.append((c["data"].ngram, c["model"].nb_alpha, c["fit"].epochs))
        assert not c["fit"].tune and not c["fit"].calibrate
        return c["data"].ngram + c["model"].nb_alpha + c["train"].weight_decay + 1 / c["fit"].epochs
    tuned, record = tune.search(cfg, trial)
    assert [e for *_, e in seen] == [2] * 6 + [4] * 3 + [8]
    assert (tuned["data"].ngram, tuned["model"].nb_alpha, tuned["fit"].epochs) == (2, 0.5, 8)
    assert record["chosen"]["fit.epochs"] == 8 and len(record["trials"]) == 10 and record["epochs_spent"] == 32
    seen.clear()
    cfg = C._resolve("nbbag", {"fit": {"tune_trials": 6, "tune_budget": 15}}, None, False, None)
    _, record = tune.search(cfg, trial)
    assert record["epochs_spent"] == 12
    assert [e for *_, e in seen] == [2] * 6  # the next trial (4 epochs) would pass 15
    seen.clear()
    _, record = tune.search(cfg, trial, fixed={"fit.epochs"})  # one rung at the preset's 6 epochs
    assert {e for *_, e in seen} == {6} and len(seen) == 2


def test_tuning_never_reads_the_test_split_and_eval_reuses_the_choice(tmp_path, capsys):
    train = _write(tmp_path / "train.jsonl", make_reviews(120, seed=0))
    test_rows = make_reviews(60, seed=1)
    test = _write(tmp_path / "test.jsonl", test_rows)
    poisoned = _write(tmp_path / "poisoned.jsonl", [{**r, "label": 1 - r["label"]} for r in test_rows])
    runs = {}
    for name, path in (("clean", test), ("poisoned", poisoned)):
        runs[name], _ = C.train(None, _ov(train, data={"test_path": str(path)}), out=str(tmp_path / name),
                                progress=False)
    chosen = [json.loads((runs[n].path / "config.json").read_text())["tune"]["chosen"] for n in runs]
    assert chosen[0] == chosen[1] and "fit.epochs" in chosen[0]
    m = {n: json.loads((runs[n].path / "eval" / "test" / "metrics.json").read_text()) for n in runs}
    assert m["clean"]["accuracy"] > 0.9 > 0.1 > m["poisoned"]["accuracy"]  # the poison was there to read
    assert m["clean"]["tuned"] == chosen[0]
    pipe = genforge.load(runs["clean"].path)  # the chosen settings are the model's
    assert pipe.featurizer.ngram == chosen[0].get("data.ngram", 3) and pipe.meta["tune"]["chosen"] == chosen[0]
    assert pipe.meta["config"]["fit"]["epochs"] == chosen[0]["fit.epochs"]
    capsys.readouterr()
    assert main(["eval", str(runs["clean"].path), "--data", str(test)]) == 0
    assert json.loads(capsys.readouterr().out)["tuned"] == chosen[0]
    # --fit.tune=false: the preset as written
    run, _ = C.train(None, _ov(train, fit={"tune": False}), out=str(tmp_path / "plain"), progress=False)
    meta = genforge.load(run.path).meta
    assert "tune" not in meta and meta["config"]["data"]["ngram"] == 3 and meta["config"]["fit"]["epochs"] == 6


def test_a_trial_validates_once_after_its_last_step_and_is_not_calibrated(tmp_path, monkeypatch):
    train = _write(tmp_path / "train.jsonl", make_reviews(120, seed=0))
    evals, calibrated = [], []
    real_eval, real_cal = C.ClassifierTask.evaluate, C.calibrate
    monkeypatch.setattr(C.ClassifierTask, "evaluate", lambda self: evals.append(self.trainer.step) or real_eval(self))
    monkeypatch.setattr(C, "calibrate", lambda run, *a, **k: calibrated.append(run.path) or real_cal(run, *a, **k))
    run, _ = C.train(None, _ov(train, fit={"tune_trials": 2, "tune_budget": 4}), out=str(tmp_path / "r"),
                     progress=False)
    tuned = json.loads((run.path / "config.json").read_text())["tune"]
    assert len(tuned["trials"]) == 2 and tuned["chosen"]["fit.epochs"] == 2
    # 108 training texts in batches of 16: 7 steps an epoch; each 2-epoch trial validates at step 14 alone,
    # the run itself after every epoch (its best checkpoint is chosen on them)
    assert evals == [14, 14, 7, 14] and calibrated == [run.path]


def test_cv_featurises_once(tmp_path, monkeypatch):
    train = _write(tmp_path / "train.jsonl", make_reviews(120, seed=0))
    calls = []
    real = Featurizer.transform
    monkeypatch.setattr(Featurizer, "transform", lambda self, texts: calls.append(len(texts)) or real(self, texts))
    res = C.cross_validate(None, _ov(train, fit={"tune": False, "epochs": 2}), folds=3, out=str(tmp_path / "cv"))
    assert res["summary"]["accuracy"]["mean"] > 0.9
    assert calls == [120]  # every text once, for all folds, their validation splits and held-out folds
    calls.clear()
    res = C.cross_validate(None, _ov(train, fit={"tune_trials": 2, "tune_budget": 4}), folds=2,
                           out=str(tmp_path / "cvt"))
    assert calls and set(calls) == {120} and len(calls) <= 2  # once per n-gram setting tried, tuning included
    for k, fold in enumerate(res["per_fold"], 1):  # every fold searched on its own training split
        meta = genforge.load(tmp_path / "cvt" / f"fold{k}").meta
        assert "tune" in meta and fold["tuned"] == meta["tune"]["chosen"] and fold["tune_once"] is False
    res = C.cross_validate(None, _ov(train, fit={"tune_trials": 2, "tune_budget": 4, "tune_once": True}),
                           folds=2, out=str(tmp_path / "cvo"))
    first, second = res["per_fold"]
    assert first["tuned"] == second["tuned"] and second["tune_once"] is True  # the first fold's search, reused
    later = genforge.load(tmp_path / "cvo" / "fold2").meta
    assert "tune" not in later and later["config"]["fit"]["epochs"] == first["tuned"]["fit.epochs"]


def test_feature_cache_reads_hashed_ngrams_back(tmp_path, monkeypatch):
    monkeypatch.setattr(featcache, "MIN_TEXTS", 0)
    texts = [r["text"] for r in make_reviews(40)]
    f = Featurizer("ngram", ngram=2, buckets=1 << 12)
    first = featcache.transform(f, texts)
    calls = []
    real = Featurizer.transform
    monkeypatch.setattr(Featurizer, "transform", lambda self, t: calls.append(1) or real(self, t))
    again = featcache.transform(f, texts)
    assert not calls and torch.equal(first.ids, again.ids) and torch.equal(first.offsets, again.offsets)
    featcache.transform(f, texts[:-1] + ["another text"])  # another text: another entry
    featcache.transform(Featurizer("ngram", ngram=3, buckets=1 << 12), texts)  # another setting too
    assert len(calls) == 2
    rows = featcache.subset(first, [3, 0])
    b = first.batch(torch.tensor([3, 0]))
    assert torch.equal(rows.ids, b[0]) and rows.offsets.tolist() == b[1].tolist() + [b[0].numel()]
