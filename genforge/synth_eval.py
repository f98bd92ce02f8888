"""Does synthetic data help? The protocol of `genforge synth-eval`: table, plot and JSON.

    genforge synth-eval images --data ../shared/datasets/mnist --out runs/synth-eval-mnist \
        --fractions 0.01,0.1,1 --ratios 1,4 --seeds 0,1,2 --gen-seconds 300 --clf-seconds 120
    genforge synth-eval text --data imdb/train.jsonl.gz --test imdb/test.jsonl.gz --out runs/synth-eval-imdb \
        --fractions 0.01 --classifiers nbbag,lstm --gen-seconds 600 [--gen-init runs/gpt-imdb-unlabelled]

    from genforge import synth_eval
    report = synth_eval.run("images", "../shared/datasets/mnist", "runs/se", fractions=[0.01, 0.1, 1.0])

For every seed, `real_subsets` draws a stratified validation set from the real training split
and, from the rest, a stratified subset per real-data fraction (nested: 1% inside 10% inside
100%). The test set is the data set's own (images: its test split; texts: --test). Then, per
fraction, each stage through the families' Python train() APIs, everything kept under --out:
    gen/      the generator, trained on that fraction's real subset only (the classifier's data),
              images: a conditional GAN (preset cdcgan); texts: a label-conditioned GPT;
    synth/    `synth.make`: max(ratios) x the real count of every class (with judge_real=P, run(...) only: twice
              that, filtered by the seed's real-only classifier of the same real subset, kept at p >= P);
    CLF/REGIME/  one classifier per regime and classifier preset (its training file beside it, CLF/REGIME.npz
              or .jsonl, where it is made), validated and tested on real data:
              real (real only), synthetic (trained on synthetic only: the Classification Accuracy
              Score) and real+synthetic xR (R synthetic samples per real one).
A stage that finished holds stage.json and is not run again, so an interrupted evaluation resumes
where it stopped (a stage without it is started afresh). results.json holds every accuracy (and
each classifier's steps: table.md flags runs that stopped short of clf_steps),
per regime and fraction the mean and std over seeds, and the gain over real only (paired by
seed: mean and std of the differences); table.md shows them and plot.png draws accuracy against
the real fraction, one line per regime.
"""
from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np

from . import config
from .data.labelled import encode_labels, label_vocabulary, read_labelled, stratified_split


def real_subsets(y: np.ndarray, fractions: list[float], val_fraction: float, seed: int
                 ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """(validation indices, {fraction: training indices}): a stratified validation share, then from the
    rest a stratified `fraction` of every class (at least one), the rule of imageclf's data.fraction:
    disjoint from validation, nested across fractions, the same for the same seed."""
    pool, val = stratified_split(y, val_fraction, seed)
    return val, {f: pool if f >= 1 else pool[stratified_split(y[pool], f, seed)[1]] for f in fractions}


def _stage(folder: Path, fn) -> dict:
    """fn()'s result, kept in folder/stage.json: a finished stage is not run again. Its "run" is kept
    relative to the folder, so a copied or moved --out resumes from its own runs, not the old place's."""
    done = folder / "stage.json"
    if not done.is_file():
        if folder.exists():
            shutil.rmtree(folder)  # an interrupted stage starts afresh
        folder.mkdir(parents=True)
        result = fn()
        if "run" in result and Path(result["run"]).resolve().is_relative_to(folder.resolve()):
            result["run"] = str(Path(result["run"]).resolve().relative_to(folder.resolve()))
        done.write_text(json.dumps(result, indent=2))
    result = json.loads(done.read_text())
    return {**result, "run": str(folder / result["run"])} if "run" in result else result


def _train(family, preset: str | None, seconds: float, user: dict, progress: bool, overrides: dict, seed: int,
           out: Path, init_from: str | None = None) -> dict:
    """One family's train() under the stage's time budget and seed; the user's overrides go last."""
    ov = _merge(_merge(overrides, {"train": {"seed": seed, "max_seconds": seconds}}), user)
    run_dir, result = family.train(preset=preset, overrides=ov, out=out, progress=progress,
                                   **({"init_from": init_from} if init_from else {}))
    return {"run": str(run_dir.path), "steps": result.step}


def _merge(base: dict, extra: dict) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in extra.items():
        out.setdefault(section, {}).update(values)
    return out


# ----------------------------------------------------------------------------- the two routes


class Images:
    """Image sets: a conditional GAN makes the data, an image classifier (imageclf) learns it.

    The classifier takes the real set itself with data.fraction / data.seed / data.val_fraction;
    the generator is trained on the very images `imageclf.splits` picks for that configuration."""
    generator, fmt = "gan", "npz"

    def __init__(self, data: str, size: int, channels: int, val_fraction: float, clf_overrides: dict):
        from .data import images as image_data
        self.data, self.size, self.channels, self.val_fraction = data, size, channels, val_fraction
        self.clf_overrides = clf_overrides
        if image_data.load(data, size, channels, "test").labels is None:
            raise ValueError(f"--data {data}: synth-eval needs a labelled image set")

    def real(self, seed: int, fraction: float, preset: str | None, fdir: Path) -> tuple[str, dict[str, int], dict]:
        """(the generator's data file, real images per class, the classifier's data overrides)."""
        from .families import imageclf
        ov = {"data": {"path": self.data, "fraction": fraction, "seed": seed, "val_fraction": self.val_fraction},
              "model": {"image_size": self.size, "channels": self.channels}}
        cfg = config.resolve(imageclf.sections(), imageclf.PRESETS, preset or imageclf.DEFAULT_PRESET,
                             _merge(ov, self.clf_overrides))
        train = imageclf.splits(cfg["data"], cfg["model"]).train
        np.savez(fdir / "real.npz", images=train.images, labels=train.labels, class_names=np.array(train.class_names))
        counts = {c: int((train.labels == k).sum()) for k, c in enumerate(train.class_names)}
        return str(fdir / "real.npz"), counts, ov["data"]

    def gen_overrides(self, real: str) -> dict:
        return {"data": {"path": real, "test_fraction": 0.0}, "gan": {"monitor_samples": 0},
                "model": {"image_size": self.size, "channels": self.channels}}

    def mix(self, real: dict, synth: str | None, take: dict[str, int] | None, ratio: float | None,
            path: Path) -> tuple[dict, int]:
        """The classifier's data overrides: real only, synthetic only (extra_weight 1) or both (R extra per real
        image: extra_weight R / (1 + R) unless --extra-weight is given)."""
        if synth is None:
            return real, 0
        pool = np.load(synth)
        keep = _first_per_class(pool["labels"], pool["class_names"].tolist(), take)
        np.savez(path, images=pool["images"][keep], labels=pool["labels"][keep], class_names=pool["class_names"])
        return {**real, "extra": str(path), "extra_weight": 1.0 if ratio is None else ratio / (1 + ratio)}, len(keep)

    def accuracy(self, run: Path) -> float:
        return float(json.loads((run / "eval.json").read_text())["test_accuracy"])

    def clf_family(self, name: str) -> tuple[str, str | None]:
        return "imageclf", (None if name == "default" else name)


class Texts:
    """Labelled texts: a label-conditioned GPT makes the data, text classifiers (nbbag, ...) learn it,
    validated on a real stratified share and tested on --test."""
    generator, fmt = "gpt", "jsonl"

    def __init__(self, data: str, test: str, val_fraction: float):
        if not test:
            raise ValueError("synth-eval text: --test FILE (labelled real test data) is required")
        self.data, self.test, self.val_fraction = read_labelled(data), test, val_fraction
        self.names = label_vocabulary(self.data.labels, self.data.source)
        self.y = encode_labels(self.data, self.names)

    def real(self, seed: int, fraction: float, preset: str | None, fdir: Path) -> tuple[str, dict[str, int], dict]:
        val, subsets = real_subsets(self.y, [fraction], self.val_fraction, seed)
        for name, idx in (("val", val), ("real", subsets[fraction])):
            _jsonl(fdir / f"{name}.jsonl", [(self.data.texts[i], self.data.labels[i]) for i in idx])
        counts = {c: int((self.y[subsets[fraction]] == k).sum()) for k, c in enumerate(self.names)}
        return str(fdir / "real.jsonl"), counts, {"path": str(fdir / "real.jsonl"),
                                                   "val_path": str(fdir / "val.jsonl"), "test_path": self.test}

    def gen_overrides(self, real: str) -> dict:
        return {"data": {"path": real, "label_field": "label"}}

    def mix(self, real: dict, synth: str | None, take: dict[str, int] | None, ratio: float | None,
            path: Path) -> tuple[dict, int]:
        """The classifier's data overrides: the real file, the synthetic one, or both in one file."""
        if synth is None:
            return real, 0
        rows = [] if ratio is None else [(r["text"], r["label"]) for r in map(json.loads, open(real["path"]))]
        made = [json.loads(line) for line in open(synth, encoding="utf-8")]
        keep = _first_per_class(np.array([self.names.index(r["label"]) for r in made]), self.names, take)
        _jsonl(path, rows + [(made[i]["text"], made[i]["label"]) for i in keep])
        return {**real, "path": str(path)}, len(keep)

    def accuracy(self, run: Path) -> float:
        return float(json.loads((run / "eval" / "test" / "metrics.json").read_text())["accuracy"])

    def clf_family(self, name: str) -> tuple[str, str | None]:
        return "classifier", (None if name == "default" else name)  # default: nbbag


def _jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for text, label in rows:
            f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def _first_per_class(labels: np.ndarray, names: list[str], take: dict[str, int] | None) -> np.ndarray:
    """Indices of the first take[class] samples of every class (all with take=None), in order."""
    if take is None:
        return np.arange(len(labels))
    return np.sort(np.concatenate([np.flatnonzero(labels == k)[:take.get(c, 0)] for k, c in enumerate(names)]))


# ----------------------------------------------------------------------------- the protocol


def run(route: str, data: str, out: str, fractions=(0.01, 0.1, 1.0), ratios=(1.0,), seeds=(0, 1, 2),
        classifiers=("default",), test: str = "", val_fraction: float = 0.1, gen_preset: str | None = None,
        gen_seconds: float = 60.0, clf_seconds: float = 30.0, gen_overrides: dict | None = None,
        clf_overrides: dict | None = None, gen_init: str | None = None, extra_weight: float | None = None,
        size: int = 28, channels: int = 1, synth_options: dict | None = None, progress: bool = False,
        clf_steps: int = 500, judge_real: float | None = None) -> dict:
    """Run (or resume) the protocol under `out`; returns results.json's content (also table.md and plot.png).

    Every classifier trains `clf_steps` optimizer steps (within `clf_seconds`), whatever its data: with
    the presets' epoch counts instead (clf_steps=0), a 1% real set would train a tenth of the steps of a
    real+synthetic set ten times its size, and the comparison would measure the step count.

    judge_real=P filters the synthetic pool with the seed's real-only classifier (the first of `classifiers`,
    trained on the same real subset: no other data enters) through synth's judge: a sample is kept when that
    classifier gives its intended label probability >= P. Twice the pool is drawn so that the mixed regimes
    still find R x n per class after the filter (rows' n_synthetic say how many they got).
    """
    from . import families, synth
    fractions, ratios, seeds = sorted(set(map(float, fractions))), sorted(set(map(float, ratios))), list(seeds)
    if route not in ("images", "text"):
        raise ValueError(f"synth-eval: route must be 'images' or 'text', got {route!r}")
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise ValueError(f"--fractions must be in (0, 1], got {fractions}")
    if clf_steps < 0:
        raise ValueError(f"--clf-steps must be >= 0 (0 = each preset's own epochs), got {clf_steps}")
    if not ratios or not all(r > 0 for r in ratios) or not seeds:
        raise ValueError(f"--ratios must be positive and --seeds not empty, got {ratios}, {seeds}")
    if judge_real is not None and not 0 <= judge_real <= 1:
        raise ValueError(f"synth-eval: --judge-real (judge_real) must be a probability in [0, 1], got {judge_real}")
    src = Images(data, size, channels, val_fraction, clf_overrides or {}) if route == "images" \
        else Texts(data, test, val_fraction)
    root = Path(out)
    gen_preset = gen_preset or ("cdcgan" if route == "images" else None)
    gen_stage = partial(_train, families.get(src.generator), gen_preset, gen_seconds, gen_overrides or {}, progress,
                        init_from=gen_init)
    rows = []
    for seed in seeds:
        for f in fractions:
            fdir = root / f"seed{seed}" / f"real{f:g}"
            fdir.mkdir(parents=True, exist_ok=True)
            real, counts, real_data = src.real(seed, f, src.clf_family(classifiers[0])[1], fdir)
            gen = _stage(fdir / "gen", partial(gen_stage, src.gen_overrides(real), seed, fdir / "gen" / "run"))["run"]

            def classify(clf: str, regime: str, synth_part: str | None, take: dict | None, ratio: float | None):
                family, preset = src.clf_family(clf)
                cdir = fdir / clf / regime.replace(" ", "_").replace("+", "_")
                dov, n_synth = src.mix(real_data, synth_part, take, ratio, cdir.with_name(cdir.name + f".{src.fmt}"))
                if synth_part and ratio and extra_weight is not None and route == "images":
                    dov["extra_weight"] = extra_weight
                fixed = {"fit": {"epochs": 0}, "train": {"max_iters": clf_steps}} if clf_steps else {}
                res = _stage(cdir, partial(_train, families.get(family), preset, clf_seconds, clf_overrides or {},
                                           progress, {"data": dov, **fixed}, seed, cdir / "run"))
                return res, dov, n_synth

            judge = {} if judge_real is None else {"judge": classify(classifiers[0], "real", None, None, None)[0]["run"],
                                                   "min_confidence": judge_real}
            pool_counts = {c: max(1, int(round(max(ratios) * n * (2 if judge else 1)))) for c, n in counts.items() if n}
            made = _stage(fdir / "synth", partial(synth.make, gen, str(fdir / "synth" / "set"), per_class=pool_counts,
                                                  seed=seed, fmt=src.fmt, command=["synth-eval"], progress=progress,
                                                  **(synth_options or {}), **judge))
            pool = str(fdir / "synth" / "set" / made["files"][0])
            # (regime, synthetic pool, synthetic samples per class, synthetic-to-real ratio)
            regimes = [("real", None, None, None), ("synthetic", pool, None, None)] + [
                (f"real+synthetic x{r:g}", pool, {c: int(round(r * n)) for c, n in counts.items()}, r) for r in ratios]
            for clf in classifiers:
                for regime, synth_part, take, ratio in regimes:
                    res, dov, n_synth = classify(clf, regime, synth_part, take, ratio)
                    rows.append({"seed": seed, "fraction": f, "classifier": clf, "regime": regime,
                                 "accuracy": src.accuracy(Path(res["run"])), "n_real": 0 if regime == "synthetic"
                                 else sum(counts.values()), "n_synthetic": n_synth, "generator": gen,
                                 "run": res["run"], "data": dov, "steps": res.get("steps")})
    report = {"route": route, "data": data, "test": test or "the data set's test split", "fractions": fractions,
              "ratios": ratios, "seeds": seeds, "classifiers": list(classifiers),
              "generator": {"family": src.generator, "preset": gen_preset, "seconds": gen_seconds, "init_from": gen_init,
                            "overrides": gen_overrides or {}},
              "judge_real": judge_real, "clf_seconds": clf_seconds, "clf_steps": clf_steps,
              "clf_overrides": clf_overrides or {}, "extra_weight": extra_weight, "rows": rows,
              "summary": summarize(rows)}
    (root / "results.json").write_text(json.dumps(report, indent=2))
    (root / "table.md").write_text(table(report))
    plot(report, root / "plot.png")
    return report


def summarize(rows: list[dict]) -> list[dict]:
    """Per (classifier, regime, fraction): accuracy mean and std over seeds, and the gain over real only
    (mean and std of the per-seed differences)."""
    out = []
    keys = sorted(dict.fromkeys((r["classifier"], r["regime"], r["fraction"]) for r in rows), key=lambda k: (k[0], k[2]))
    for clf, regime, f in keys:
        acc = {r["seed"]: r["accuracy"] for r in rows if (r["classifier"], r["regime"], r["fraction"]) == (clf, regime, f)}
        real = {r["seed"]: r["accuracy"] for r in rows if (r["classifier"], r["regime"], r["fraction"]) == (clf, "real", f)}
        gains = [acc[s] - real[s] for s in acc if s in real]
        out.append({"classifier": clf, "regime": regime, "fraction": f, "seeds": len(acc),
                    "mean": float(np.mean(list(acc.values()))), "std": float(np.std(list(acc.values()))),
                    "gain_mean": float(np.mean(gains)), "gain_std": float(np.std(gains))})
    return out


def table(report: dict) -> str:
    """The summary as a markdown table: accuracy mean ± std over seeds and the gain over real only."""
    g = report["generator"]
    init = f", pre-trained: started from {g['init_from']}" if g.get("init_from") else ""
    steps = (g.get("overrides") or {}).get("train", {}).get("max_iters")  # a time budget, steps, or both
    parts = ([f"{g['seconds']:g} s"] if g["seconds"] else []) + ([f"{steps} steps"] if steps else [])
    budget = " and ".join(parts) or "the preset's steps"
    lines = [f"# synth-eval: {report['route']} ({report['data']}), seeds {report['seeds']}", "",
             f"Generator: {g['family']} (preset {g['preset'] or 'default'}, {budget} per run{init}), trained "
             "on the real subset of its row only; classifiers validated and tested on real data"
             + (f", {report['clf_steps']} steps each in every regime." if report.get("clf_steps") else
                ", each preset's own epochs (larger sets train more steps).")
             + (f" Synthetic pools filtered by the seed's real-only classifier (kept at p >= {report['judge_real']:g})."
                if report.get("judge_real") is not None else "")
             + "".join(f" {what}: {_settings(ov)}." for what, ov in (("Generator settings", g.get("overrides")),
                                                                     ("Classifier settings", report.get("clf_overrides")))
                       if _settings(ov))
             + (f" Synthetic share of every mixed batch: {report['extra_weight']:g}."
                if report.get("extra_weight") is not None else ""), "",
             "| classifier | regime | real fraction | accuracy (mean ± std) | gain over real only (mean ± std) |",
             "|---|---|---|---|---|"]
    for s in report["summary"]:
        gain = "—" if s["regime"] == "real" else f"{100 * s['gain_mean']:+.2f} ± {100 * s['gain_std']:.2f}"
        lines.append(f"| {s['classifier']} | {s['regime']} | {s['fraction']:g} | "
                     f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} | {gain} |")
    short = [r for r in report.get("rows", []) if report.get("clf_steps") and r.get("steps")
             and r["steps"] < report["clf_steps"]]
    if short:  # a time budget (--clf-seconds) or early stopping cut them: those regimes trained fewer steps
        lines += ["", f"**{len(short)} classifier runs stopped before {report['clf_steps']} steps** (at "
                  f"{sorted({r['steps'] for r in short})}): --clf-seconds ran out or early stopping; use --clf-seconds 0."]
    return "\n".join(lines) + "\n\nAccuracies in percent on the real test set; a gain counts when it is larger than its spread.\n"


def _settings(overrides: dict | None) -> str:
    """{'gan': {'diffaugment': True}} -> 'gan.diffaugment=True': the overrides a table must state (the step
    count is stated already)."""
    return ", ".join(f"{section}.{k}={v}" for section, values in (overrides or {}).items() for k, v in values.items()
                     if (section, k) != ("train", "max_iters"))


def plot(report: dict, path: Path) -> None:
    """Accuracy against the real-data fraction (log scale), one line per classifier and regime, std as bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for clf, regime in dict.fromkeys((s["classifier"], s["regime"]) for s in report["summary"]):
        pts = [s for s in report["summary"] if (s["classifier"], s["regime"]) == (clf, regime)]
        label = regime if len(report["classifiers"]) == 1 else f"{clf}: {regime}"
        ax.errorbar([s["fraction"] for s in pts], [s["mean"] for s in pts], yerr=[s["std"] for s in pts],
                    marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xticks(report["fractions"], [f"{f:.0%}" for f in report["fractions"]])
    ax.minorticks_off()
    ax.set_xlabel("fraction of the real training data")
    ax.set_ylabel("test accuracy (real test set)")
    ax.set_title(f"synth-eval: {report['route']}, {len(report['seeds'])} seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_sets(items: list[str] | None) -> dict:
    """['train.max_iters=5', ...] (--gen-set / --clf-set) -> {'train': {'max_iters': '5'}}."""
    return config.parse_overrides([f"--{item}" for item in items or []])
