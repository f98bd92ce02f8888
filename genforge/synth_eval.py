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
    synth/    `synth.make`: max(ratios) x the real count of every class;
    CLF/REGIME/  one classifier per regime and classifier preset, validated and tested on real data:
              real (real only), synthetic (trained on synthetic only: the Classification Accuracy
              Score) and real+synthetic xR (R synthetic samples per real one).
A stage that finished holds stage.json and is not run again, so an interrupted evaluation resumes
where it stopped (a stage without it is started afresh). results.json holds every accuracy,
per regime and fraction the mean and std over seeds, and the gain over real only (paired by
seed: mean and std of the differences); table.md shows them and plot.png draws accuracy against
the real fraction, one line per regime.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from . import config
from .data.labelled import encode_labels, label_vocabulary, read_labelled, stratified_split


def real_subsets(y: np.ndarray, fractions: list[float], val_fraction: float, seed: int
                 ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """(validation indices, {fraction: training indices}): stratified, disjoint from validation,
    nested across fractions (every class keeps at least one example), the same for the same seed."""
    pool, val = stratified_split(y, val_fraction, seed)
    order = {c: np.random.default_rng([seed, int(c)]).permutation(pool[y[pool] == c]) for c in np.unique(y)}
    subsets = {f: np.sort(np.concatenate([idx[:max(1, int(round(f * len(idx))))] for idx in order.values()]))
               for f in fractions}
    return val, subsets


def _stage(folder: Path, fn) -> dict:
    """fn()'s result, kept in folder/stage.json: a finished stage is not run again."""
    done = folder / "stage.json"
    if done.is_file():
        return json.loads(done.read_text())
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted stage starts afresh
    folder.mkdir(parents=True)
    result = fn()
    done.write_text(json.dumps(result, indent=2))
    return result


def _merge(base: dict, extra: dict) -> dict:
    out = {k: dict(v) for k, v in base.items()}
    for section, values in extra.items():
        out.setdefault(section, {}).update(values)
    return out


def _test_accuracy(run: Path) -> float:
    return float(json.loads((run / "eval" / "test" / "metrics.json").read_text())["accuracy"])


# ----------------------------------------------------------------------------- the two routes


class Images:
    """MNIST-like image sets: a conditional GAN makes the data, an image classifier (imageclf) learns it."""
    generator, fmt = "gan", "npz"

    def __init__(self, data: str, size: int, channels: int):
        from .data import images as image_data
        self.size, self.channels = size, channels
        self.train = image_data.load(data, size, channels, "train")
        self.test = image_data.load(data, size, channels, "test")
        self.y, self.names = self.train.labels, self.train.class_names
        if self.y is None:
            raise ValueError(f"--data {data}: synth-eval needs a labelled image set")

    def write(self, idx, path: Path) -> str:
        np.savez(path, images=self.train.images[idx], labels=self.y[idx], class_names=np.array(self.names))
        return str(path)

    def write_test(self, root: Path) -> str:
        np.savez(root / "test.npz", images=self.test.images, labels=self.test.labels, class_names=np.array(self.names))
        return str(root / "test.npz")

    def gen_overrides(self, real: str) -> dict:
        return {"data": {"path": real, "test_fraction": 0.0}, "gan": {"monitor_samples": 0},
                "model": {"image_size": self.size, "channels": self.channels}}

    def mix(self, real: str | None, synth: str | None, ratio_take: dict[str, int] | None, path: Path) -> tuple:
        """(data.path, extra overrides) of a classifier run on real data plus the first samples of the pool."""
        if synth is None:
            return real, {}
        pool = np.load(synth)
        take = _first_per_class(pool["labels"], pool["class_names"].tolist(), ratio_take)
        np.savez(path, images=pool["images"][take], labels=pool["labels"][take], class_names=pool["class_names"])
        if real is None:
            return str(path), {}
        return real, {"extra": str(path)}

    def clf_family(self, name: str) -> tuple[str, str | None]:
        return "imageclf", (None if name == "default" else name)


class Texts:
    """Labelled texts: a label-conditioned GPT makes the data, text classifiers (nbbag, ...) learn it."""
    generator, fmt = "gpt", "jsonl"

    def __init__(self, data: str, test: str):
        if not test:
            raise ValueError("synth-eval text: --test FILE (labelled real test data) is required")
        self.train, self.test_path = read_labelled(data), test
        self.names = label_vocabulary(self.train.labels, self.train.source)
        self.y = encode_labels(self.train, self.names)

    def write(self, idx, path: Path) -> str:
        _jsonl(path, [(self.train.texts[i], self.train.labels[i]) for i in idx])
        return str(path)

    def write_test(self, root: Path) -> str:
        return self.test_path

    def gen_overrides(self, real: str) -> dict:
        return {"data": {"path": real, "label_field": "label"}}

    def mix(self, real: str | None, synth: str | None, ratio_take: dict[str, int] | None, path: Path) -> tuple:
        rows = [] if real is None else [(r["text"], r["label"]) for r in map(json.loads, open(real, encoding="utf-8"))]
        if synth is not None:
            made = [json.loads(line) for line in open(synth, encoding="utf-8")]
            take = _first_per_class(np.array([self.names.index(r["label"]) for r in made]), self.names, ratio_take)
            rows += [(made[i]["text"], made[i]["label"]) for i in take]
        _jsonl(path, rows)
        return str(path), {}

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
        size: int = 28, channels: int = 1, synth_options: dict | None = None, progress: bool = False) -> dict:
    """Run (or resume) the protocol under `out`; returns results.json's content (also table.md and plot.png)."""
    from . import families, synth
    fractions, ratios, seeds = sorted(set(map(float, fractions))), sorted(set(map(float, ratios))), list(seeds)
    if route not in ("images", "text"):
        raise ValueError(f"synth-eval: route must be 'images' or 'text', got {route!r}")
    if not fractions or not all(0 < f <= 1 for f in fractions):
        raise ValueError(f"--fractions must be in (0, 1], got {fractions}")
    if not ratios or not all(r > 0 for r in ratios) or not seeds:
        raise ValueError(f"--ratios must be positive and --seeds not empty, got {ratios}, {seeds}")
    src = Images(data, size, channels) if route == "images" else Texts(data, test)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    test_path = src.write_test(root)
    gen_preset = gen_preset or ("cdcgan" if route == "images" else None)
    rows = []
    for seed in seeds:
        val_idx, subsets = real_subsets(src.y, fractions, val_fraction, seed)
        sdir = root / f"seed{seed}"
        sdir.mkdir(exist_ok=True)
        val = src.write(val_idx, sdir / f"val.{src.fmt}")
        for f in fractions:
            fdir = sdir / f"real{f:g}"
            fdir.mkdir(exist_ok=True)
            real = src.write(subsets[f], fdir / f"real.{src.fmt}")
            counts = {c: int((src.y[subsets[f]] == k).sum()) for k, c in enumerate(src.names)}

            def train_gen(fdir=fdir, real=real):
                ov = _merge(src.gen_overrides(real), {"train": {"seed": seed, "max_seconds": gen_seconds}})
                run_dir, _ = families.get(src.generator).train(preset=gen_preset, overrides=_merge(ov, gen_overrides or {}),
                                                               out=fdir / "gen" / "run", init_from=gen_init,
                                                               progress=progress)
                return {"run": str(run_dir.path)}

            gen = _stage(fdir / "gen", train_gen)["run"]
            pool_counts = {c: max(1, int(round(max(ratios) * n))) for c, n in counts.items() if n}
            made = _stage(fdir / "synth", lambda fdir=fdir, gen=gen, pc=pool_counts: synth.make(
                gen, str(fdir / "synth" / "set"), per_class=pc, seed=seed, fmt=src.fmt, command=["synth-eval"],
                **(synth_options or {})))
            pool = str(fdir / "synth" / "set" / made["files"][0])
            regimes = [("real", real, None, None), ("synthetic", None, pool, None)] + [
                (f"real+synthetic x{r:g}", real, pool, {c: int(round(r * n)) for c, n in counts.items()})
                for r in ratios]
            for clf in classifiers:
                family, preset = src.clf_family(clf)
                for regime, real_part, synth_part, take in regimes:
                    cdir = fdir / clf / regime.replace(" ", "_").replace("+", "_")

                    def train_clf(cdir=cdir, real_part=real_part, synth_part=synth_part, take=take):
                        path, extra = src.mix(real_part, synth_part, take, cdir / f"train.{src.fmt}")
                        if extra and extra_weight is not None:
                            extra["extra_weight"] = extra_weight
                        ov = {"data": {"path": path, "val_path": val, "test_path": test_path, **extra},
                              "train": {"seed": seed, "max_seconds": clf_seconds}}
                        run_dir, _ = families.get(family).train(preset=preset, overrides=_merge(ov, clf_overrides or {}),
                                                                out=cdir / "run", progress=progress)
                        return {"run": str(run_dir.path), "accuracy": _test_accuracy(run_dir.path), "data": path, **extra}

                    res = _stage(cdir, train_clf)
                    rows.append({"seed": seed, "fraction": f, "classifier": clf, "regime": regime,
                                 "accuracy": res["accuracy"], "n_real": int(sum(counts.values())) if real_part else 0,
                                 "generator": gen, "run": res["run"]})
    report = {"route": route, "data": data, "test": test_path, "fractions": fractions, "ratios": ratios,
              "seeds": seeds, "classifiers": list(classifiers), "generator": {"family": src.generator,
              "preset": gen_preset, "seconds": gen_seconds, "init_from": gen_init}, "clf_seconds": clf_seconds,
              "rows": rows, "summary": summarize(rows)}
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
    lines = [f"# synth-eval: {report['route']} ({report['data']}), seeds {report['seeds']}", "",
             "| classifier | regime | real fraction | accuracy (mean ± std) | gain over real only (mean ± std) |",
             "|---|---|---|---|---|"]
    for s in report["summary"]:
        gain = "—" if s["regime"] == "real" else f"{100 * s['gain_mean']:+.2f} ± {100 * s['gain_std']:.2f}"
        lines.append(f"| {s['classifier']} | {s['regime']} | {s['fraction']:g} | "
                     f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} | {gain} |")
    return "\n".join(lines) + "\n\nAccuracies in percent on the real test set; a gain counts when it is larger than its spread.\n"


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
