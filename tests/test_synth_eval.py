"""`genforge synth-eval`: the real-data subsets, the summary, and a tiny end-to-end run on a toy image set."""
import json

import numpy as np
import pytest

from genforge import cli, synth_eval
from tests.conftest import make_digit_like

pytestmark = pytest.mark.usefixtures("one_thread")


def test_real_subsets_are_stratified_disjoint_from_validation_nested_and_seeded():
    y = np.repeat([0, 1, 2], [200, 100, 50])
    val, subs = synth_eval.real_subsets(y, [0.02, 0.1, 1.0], 0.1, seed=3)
    assert np.bincount(y[val]).tolist() == [20, 10, 5]
    pool = np.setdiff1d(np.arange(len(y)), val)
    for f, idx in subs.items():
        assert not np.intersect1d(idx, val).size and len(np.unique(idx)) == len(idx)
        assert np.bincount(y[idx], minlength=3).tolist() == [max(1, round(f * n)) for n in (180, 90, 45)]
    assert np.array_equal(subs[1.0], pool)
    assert set(subs[0.02]) <= set(subs[0.1]) <= set(subs[1.0])  # nested: a larger fraction adds examples
    val2, subs2 = synth_eval.real_subsets(y, [0.1], 0.1, seed=3)
    assert np.array_equal(val, val2) and np.array_equal(subs[0.1], subs2[0.1])  # the same for a seed
    _, other = synth_eval.real_subsets(y, [0.1], 0.1, seed=4)
    assert not np.array_equal(other[0.1], subs[0.1])


def test_summary_pairs_gains_by_seed():
    rows = [{"classifier": "c", "fraction": 0.1, "seed": s, "regime": r, "accuracy": a}
            for s, r, a in [(0, "real", 0.5), (1, "real", 0.7), (0, "synthetic", 0.6), (1, "synthetic", 0.8)]]
    real, syn = synth_eval.summarize(rows)
    assert real["regime"] == "real" and real["mean"] == pytest.approx(0.6) and real["std"] == pytest.approx(0.1)
    assert syn["gain_mean"] == pytest.approx(0.1) and syn["gain_std"] == pytest.approx(0.0)
    table = synth_eval.table({"route": "images", "data": "d", "seeds": [0, 1], "summary": [real, syn],
                              "generator": {"family": "gpt", "preset": None, "seconds": 5, "init_from": "runs/u"}})
    assert "started from runs/u" in table and "5 s per run" in table
    assert "| c | synthetic | 0.1 | 70.00 ± 10.00 | +10.00 ± 0.00 |" in table


GEN = ["gan.ema=0", "model.g_width=8", "model.d_width=4", "model.z_dim=16", "train.batch_size=8", "train.max_iters=3",
       "train.eval_interval=3", "train.samples=false", "train.dtype=fp32", "train.threads=1"]
CLF = ["model.width=4", "model.hidden=8", "train.batch_size=8", "train.eval_interval=3", "train.dtype=fp32",
       "train.threads=1"]


@pytest.fixture
def no_run_plots(monkeypatch):
    """The runs' own plots (loss, ROC, confusion) are most of a tiny run's time; the protocol's plot stays."""
    from genforge.metrics import classification
    from genforge.monitor import Monitor
    for owner, name in ((classification, "plot_roc"), (classification, "plot_confusion"), (Monitor, "plot")):
        monkeypatch.setattr(owner, name, lambda *a, **k: None)


def test_end_to_end_on_a_toy_image_set_writes_consistent_json_table_and_plot(tmp_path, no_run_plots):
    from genforge.families import imageclf
    images, labels = make_digit_like(n=64)
    np.savez(tmp_path / "bars.npz", images=images, labels=labels)
    out = tmp_path / "se"
    args = ["synth-eval", "images", "--data", str(tmp_path / "bars.npz"), "--out", str(out), "--fractions", "0.5,1",
            "--ratios", "1", "--seeds", "0,1", "--gen-seconds", "0", "--clf-seconds", "5", "--clf-steps", "3", "--no-progress",
            *[f"--gen-set={s}" for s in GEN], *[f"--clf-set={s}" for s in CLF]]
    assert cli.main(args) == 0
    report = json.loads((out / "results.json").read_text())
    assert (out / "plot.png").stat().st_size > 1000 and "| default | real | 0.5 |" in (out / "table.md").read_text()
    assert "3 steps each in every regime" in (out / "table.md").read_text() and report["clf_steps"] == 3
    assert "(preset cdcgan, 3 steps per run)" in (out / "table.md").read_text()  # --gen-seconds 0: by steps alone
    regimes = ["real", "synthetic", "real+synthetic x1"]
    assert len(report["rows"]) == 2 * 2 * 3 and [s["regime"] for s in report["summary"][:3]] == regimes
    for s in report["summary"]:
        accs = [r["accuracy"] for r in report["rows"] if (r["regime"], r["fraction"]) == (s["regime"], s["fraction"])]
        assert s["mean"] == pytest.approx(np.mean(accs)) and 0 <= s["mean"] <= 1
    for seed in (0, 1):  # the generator and every regime with real data see the same real subset
        fdir = out / f"seed{seed}" / "real0.5"
        gen_cfg = json.loads((fdir / "gen" / "run" / "config.json").read_text())["config"]
        assert gen_cfg["data"]["path"] == str(fdir / "real.npz") and gen_cfg["train"]["max_seconds"] == 0
        real = np.load(fdir / "real.npz")
        cfg = imageclf._resolve(None, {"data": {"path": str(tmp_path / "bars.npz"), "fraction": 0.5, "seed": seed}},
                                None, False)
        assert np.array_equal(real["images"], imageclf.splits(cfg["data"], cfg["model"]).train.images)
        counts = np.bincount(real["labels"])
        assert len(counts) == 4 and counts.max() - counts.min() <= 1 and 24 <= counts.sum() <= 28  # stratified half
        ev = {r: json.loads((fdir / "default" / r / "run" / "eval.json").read_text())
              for r in ("real", "synthetic", "real_synthetic_x1")}
        for r in ev:  # the same number of steps in every regime, whatever its data size
            clf_cfg = json.loads((fdir / "default" / r / "run" / "config.json").read_text())["config"]
            assert clf_cfg["fit"]["epochs"] == 0 and clf_cfg["train"]["max_iters"] == 3
        assert ev["real"]["n_train_real"] == ev["real_synthetic_x1"]["n_train_real"] == len(real["labels"])
        assert ev["real"]["fraction"] == 0.5 and ev["real"]["n_train_extra"] == 0
        assert ev["synthetic"]["n_train_real"] == 0 and ev["synthetic"]["extra_weight"] == 1.0
        assert ev["real_synthetic_x1"]["n_train_extra"] == len(real["labels"]) and ev["real_synthetic_x1"]["extra_weight"] == 0.5
    first = (out / "seed0" / "real1" / "gen" / "stage.json").stat().st_mtime_ns
    assert cli.main(args) == 0  # resumed: finished stages are not run again
    assert (out / "seed0" / "real1" / "gen" / "stage.json").stat().st_mtime_ns == first
    assert json.loads((out / "results.json").read_text())["summary"] == report["summary"]
    moved = tmp_path / "moved"  # a moved --out resumes from its own runs: nothing retrained, nothing read from the old place
    out.rename(moved)
    assert cli.main([str(moved) if a == str(out) else a for a in args]) == 0
    again = json.loads((moved / "results.json").read_text())
    assert again["summary"] == report["summary"] and not out.exists()
    assert all(r["run"].startswith(str(moved)) for r in again["rows"])
    assert (moved / "seed0" / "real1" / "gen" / "stage.json").stat().st_mtime_ns == first


def test_end_to_end_text_route_with_a_label_conditioned_gpt_and_nbbag(tmp_path, no_run_plots):
    from tests.conftest import make_reviews
    for name, n, seed in (("train", 60, 0), ("test", 20, 1)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in make_reviews(n, seed)))
    gen = {"model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32},
           "train": {"batch_size": 4, "max_iters": 2, "eval_interval": 2, "samples": False, "dtype": "fp32", "threads": 1}}
    report = synth_eval.run("text", str(tmp_path / "train.jsonl"), str(tmp_path / "se"), fractions=[0.5], ratios=[2],
                            seeds=[0], test=str(tmp_path / "test.jsonl"), gen_overrides=gen, gen_seconds=5,
                            clf_seconds=5, clf_overrides={"fit": {"epochs": 1}, "data": {"buckets": 4096}},
                            synth_options={"max_new_tokens": 12})
    fdir = tmp_path / "se" / "seed0" / "real0.5"
    real = [json.loads(line) for line in open(fdir / "real.jsonl")]
    val = [json.loads(line) for line in open(fdir / "val.jsonl")]
    assert len(real) == 28 and len(val) == 6 and not {r["text"] for r in real} & {r["text"] for r in val}
    mixed = [json.loads(line) for line in open(fdir / "default" / "real_synthetic_x2.jsonl")]
    made = json.loads((fdir / "synth" / "set" / "manifest.json").read_text())["counts"]  # empty texts are dropped
    assert made["generated"] == {"0": 28, "1": 28} and len(mixed) == 28 + made["total"] and mixed[:28] == real
    assert [r["regime"] for r in report["rows"]] == ["real", "synthetic", "real+synthetic x2"]
    assert all(0 <= r["accuracy"] <= 1 for r in report["rows"]) and report["rows"][2]["n_synthetic"] == made["total"]


def test_bad_input(tmp_path):
    images, labels = make_digit_like(n=16)
    np.savez(tmp_path / "bars.npz", images=images, labels=labels)
    np.savez(tmp_path / "plain.npz", images=images)
    with pytest.raises(ValueError, match="--fractions must be in"):
        synth_eval.run("images", str(tmp_path / "bars.npz"), str(tmp_path / "a"), fractions=[0.0, 0.5])
    with pytest.raises(ValueError, match="--ratios must be positive"):
        synth_eval.run("images", str(tmp_path / "bars.npz"), str(tmp_path / "a"), ratios=[-1])
    with pytest.raises(ValueError, match="needs a labelled image set"):
        synth_eval.run("images", str(tmp_path / "plain.npz"), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="--test FILE"):
        synth_eval.run("text", str(tmp_path / "x.jsonl"), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="comma-separated numbers"):
        cli.cmd_synth_eval(cli.build_parser().parse_args(["synth-eval", "images", "--data", "d", "--out", "o",
                                                           "--fractions", "a,b"]))



def test_negative_clf_steps_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--clf-steps must be >= 0"):
        synth_eval.run("images", "digits", str(tmp_path / "a"), clf_steps=-1)


def test_judge_real_filters_the_pool_with_the_seeds_real_only_classifier(tmp_path, no_run_plots):
    images, labels = make_digit_like(n=64)
    np.savez(tmp_path / "bars.npz", images=images, labels=labels)
    out = tmp_path / "se"
    assert cli.main(["synth-eval", "images", "--data", str(tmp_path / "bars.npz"), "--out", str(out), "--fractions", "1",
                     "--ratios", "1", "--seeds", "0", "--gen-seconds", "0", "--clf-seconds", "0", "--clf-steps", "3",
                     "--judge-real", "0", "--extra-weight", "0.25", "--no-progress", *[f"--gen-set={s}" for s in GEN],
                     *[f"--clf-set={s}" for s in CLF + ["aug.crop=1"]]]) == 0
    report = json.loads((out / "results.json").read_text())
    fdir = out / "seed0" / "real1"
    manifest = json.loads((fdir / "synth" / "set" / "manifest.json").read_text())
    real_run = next(r["run"] for r in report["rows"] if r["regime"] == "real")
    assert manifest["filters"]["judge"]["run"] == real_run and manifest["filters"]["judge"]["min_confidence"] == 0.0
    n_real = len(np.load(fdir / "real.npz")["labels"])
    assert sum(manifest["counts"]["generated"].values()) == 2 * n_real  # twice the pool, before the filter
    mixed = next(r for r in report["rows"] if r["regime"] == "real+synthetic x1")
    assert mixed["n_synthetic"] == n_real and all(r["steps"] == 3 for r in report["rows"])
    assert mixed["data"]["extra_weight"] == 0.25 and report["judge_real"] == 0.0
    assert json.loads((fdir / "default" / "real" / "run" / "config.json").read_text())["config"]["aug"]["crop"] == 1
    table = (out / "table.md").read_text()  # every setting that differs from the presets is stated
    assert "filtered by the seed's real-only classifier (kept at p >= 0)" in table
    assert "Generator settings: gan.ema=0, model.g_width=8" in table and "train.max_iters" not in table
    assert "aug.crop=1." in table and "Synthetic share of every mixed batch: 0.25." in table
    with pytest.raises(ValueError, match="--judge-real"):
        synth_eval.run("images", str(tmp_path / "bars.npz"), str(tmp_path / "b"), judge_real=1.5)


def test_table_flags_classifier_runs_that_stopped_before_clf_steps():
    rows = [{"classifier": "c", "fraction": 0.1, "seed": 0, "regime": r, "accuracy": 0.5, "steps": n}
            for r, n in (("real", 500), ("synthetic", 120))]
    report = {"route": "images", "data": "d", "seeds": [0], "summary": synth_eval.summarize(rows), "rows": rows,
              "clf_steps": 500, "generator": {"family": "gan", "preset": "cdcgan", "seconds": 0}}
    assert "**1 classifier runs stopped before 500 steps** (at [120])" in synth_eval.table(report)
    rows[1]["steps"] = 500
    assert "stopped before" not in synth_eval.table(report)
