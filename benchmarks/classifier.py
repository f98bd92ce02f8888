"""IMDB sentiment benchmark: every genforge classifier preset against a scikit-learn NB-LR floor.

    python benchmarks/classifier.py [--data $GENFORGE_DATASETS/imdb] [--models lstm,nbbag,...] [--out DIR]
    python benchmarks/classifier.py --models nbbag,nbbag-untuned --seeds 1,2,3 [--first-sentences]

Trains on the 25,000 training reviews (a stratified 10% of them is the validation split that picks
the best checkpoint and the ensemble weight), tests on the 25,000 test reviews, and prints test
accuracy, F1, ROC-AUC and wall time per model, plus each model's accuracy as a ratio of the floor
measured in the same run. The floor is a logistic regression on naive-Bayes-scaled binary word
uni+bigrams (scikit-learn). Results go to DIR/results.json; copy the table into BENCHMARKS.md.
`--seeds` trains every genforge row once per seed (train.seed: the validation split and the
initialisation) and adds a mean ± std row per model. `--first-sentences` writes the short-text
split first (DIR/first-sentences/{train,test}.jsonl.gz: each review up to its first . ! or ?, HTML
breaks removed, labels and order as IMDB's) and benchmarks on it.
"""
from __future__ import annotations

import argparse
import json
import os
import gzip
import platform
import re
import shutil
import time
from pathlib import Path

import numpy as np

# name -> (preset, overrides): what each row trains
MODELS = {
    "lstm": ("lstm", {}),  # article 004 exactly
    "bag": ("bag", {}),  # fastText-style uni+bigram embedding bag
    "nbbag": ("nbbag", {}),  # NB-scaled logistic regression on hashed n-grams, tuned on validation
    "nbbag-untuned": ("nbbag", {"fit": {"tune": False}}),  # the preset as written: uni+bi+trigrams, 6 epochs
    "transformer": ("transformer", {}),
}


def floor(train, test) -> dict:
    """scikit-learn: binary word uni+bigrams, NB log-count-ratio scaling, logistic regression."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    from genforge.data.words import clean_text
    t0 = time.perf_counter()
    vec = CountVectorizer(ngram_range=(1, 2), binary=True, preprocessor=clean_text)
    X = vec.fit_transform(train.texts)
    y = np.array([int(v) for v in train.labels])
    p = np.asarray(X[y == 1].sum(0)).ravel() + 1.0
    q = np.asarray(X[y == 0].sum(0)).ravel() + 1.0
    r = np.log(p / p.sum()) - np.log(q / q.sum())
    clf = LogisticRegression(C=1.0, solver="liblinear", dual=True, max_iter=1000).fit(X.multiply(r).tocsr(), y)
    seconds = time.perf_counter() - t0
    probs = clf.predict_proba(vec.transform(test.texts).multiply(r).tocsr())
    return {"probs": probs, "train_seconds": seconds}


def first_sentences(src: str, out: Path) -> str:
    """Write IMDB's first sentences (each text up to its first . ! or ?, HTML breaks removed) to `out`."""
    tag, end = re.compile(r"<[^>]{0,200}>"), re.compile(r"[.!?]")
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        with gzip.open(f"{src}/{split}.jsonl.gz", "rt") as f, gzip.open(out / f"{split}.jsonl.gz", "wt") as g:
            for line in f:
                row = json.loads(line)
                text = tag.sub(" ", row["text"]).strip()
                m = end.search(text)
                g.write(json.dumps({"text": text[:m.end()] if m else text, "label": row["label"]}) + "\n")
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(Path(os.environ.get("GENFORGE_DATASETS", "../shared/datasets")) / "imdb"))
    ap.add_argument("--models", default="floor,nbbag,bag,lstm,transformer,ensemble")
    ap.add_argument("--ensemble", default="nbbag,bag;nbbag,lstm;nbbag,transformer",
                    help="pairs of trained rows to combine, separated by ';'")
    ap.add_argument("--out", default="runs/bench-classifier")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (train.threads)")
    ap.add_argument("--seeds", default="1337", help="comma-separated train.seed values for the genforge rows")
    ap.add_argument("--first-sentences", action="store_true", help="benchmark on IMDB's first sentences")
    args = ap.parse_args()

    import genforge
    from genforge.data.labelled import encode_labels, read_labelled, stratified_split
    from genforge.families import classifier as C
    from genforge.metrics.classification import classification_metrics

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.first_sentences:
        args.data = first_sentences(args.data, out / "first-sentences")
    train_path, test_path = f"{args.data}/train.jsonl.gz", f"{args.data}/test.jsonl.gz"
    train, test = read_labelled(train_path), read_labelled(test_path)
    labels = ["0", "1"]
    y_test = encode_labels(test, labels)
    rows: dict[str, dict] = {}

    def record(name, probs, train_s, eval_s, what):
        m = classification_metrics(y_test, probs, labels)
        rows[name] = {"accuracy": m["accuracy"], "f1": m["f1"], "roc_auc": m["roc_auc"], "ece": m["ece"],
                      "train_seconds": train_s, "eval_seconds": eval_s, "what": what}
        print(f"{name:12s} acc {m['accuracy']:.4f}  F1 {m['f1']:.4f}  AUC {m['roc_auc']:.4f}  "
              f"train {train_s:6.0f}s  eval {eval_s:5.0f}s   {what}", flush=True)

    wanted = args.models.split(",")
    if "floor" in wanted:
        t0 = time.perf_counter()
        f = floor(train, test)
        record("sklearn-nblr", f["probs"], f["train_seconds"], time.perf_counter() - t0 - f["train_seconds"],
               "scikit-learn LogisticRegression(C=1, liblinear) on NB-scaled binary uni+bigrams")
    seeds = [int(s) for s in args.seeds.split(",")]
    for model in [m for m in wanted if m in MODELS]:
        for seed in seeds:
            preset, ov = MODELS[model]
            name = model if len(seeds) == 1 else f"{model} seed {seed}"
            ov = {k: dict(v) for k, v in ov.items()}
            ov.setdefault("data", {})["path"] = train_path
            ov.setdefault("train", {}).update(threads=args.threads, seed=seed)
            shutil.rmtree(out / name, ignore_errors=True)
            t0 = time.perf_counter()
            C.train(preset, ov, out=str(out / name), progress=False)
            train_s = time.perf_counter() - t0  # featurizing (or the feature cache) + tuning + training + val report
            t0 = time.perf_counter()
            pipe = genforge.load(out / name)
            probs = pipe.predict_proba(test.texts)
            tuned = (pipe.meta.get("tune") or {}).get("chosen")
            record(name, probs, train_s, time.perf_counter() - t0, f"preset {preset} {json.dumps(ov)}"
                   + (f" tuned: {json.dumps(tuned)}" if tuned else ""))
        if len(seeds) > 1:
            runs = [rows[f"{model} seed {s}"] for s in seeds]
            rows[f"{model} mean of {len(seeds)}"] = {
                k: float(np.mean([r[k] for r in runs])) for k in ("accuracy", "f1", "roc_auc", "ece", "train_seconds",
                                                                "eval_seconds")} | {
                "accuracy_std": float(np.std([r["accuracy"] for r in runs])), "what": f"seeds {seeds}"}
            print(f"{model}: accuracy {rows[f'{model} mean of {len(seeds)}']['accuracy']:.4f} ± "
                  f"{rows[f'{model} mean of {len(seeds)}']['accuracy_std']:.4f} over seeds {seeds}", flush=True)
    if "ensemble" in wanted:
        y = encode_labels(train, labels)
        _, va = stratified_split(y, 0.1, 1337)  # the validation split every member held out
        val = train.subset(va)
        for pair in args.ensemble.split(";"):
            a, b = pair.split(",")
            pa, pb = (genforge.load(out / n).predict_proba(val.texts) for n in (a, b))
            grid = np.linspace(0, 1, 21)
            losses = [-np.mean(np.log(np.clip((w * pa + (1 - w) * pb)[np.arange(len(va)), y[va]], 1e-12, 1)))
                      for w in grid]
            w = float(grid[int(np.argmin(losses))])
            name = f"{a}+{b}"
            shutil.rmtree(out / name, ignore_errors=True)
            C.ensemble([str(out / a), str(out / b)], str(out / name), weights=[w, 1 - w])
            t0 = time.perf_counter()
            probs = genforge.load(out / name).predict_proba(test.texts)
            record(name, probs, rows[a]["train_seconds"] + rows[b]["train_seconds"], time.perf_counter() - t0,
                   f"{w:.2f} x {a} + {1 - w:.2f} x {b} (weight: lowest validation log loss)")
    if "sklearn-nblr" in rows:
        base = rows["sklearn-nblr"]["accuracy"]
        for name, r in rows.items():
            r["accuracy_vs_floor"] = r["accuracy"] / base
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs "
            "(shared with other jobs)", "torch_threads": args.threads, "rows": rows}
    (out / "results.json").write_text(json.dumps(info, indent=2))
    print("\n| model | test acc | F1 | ROC-AUC | acc / floor | train s | eval s |\n|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['accuracy']:.4f} | {r['f1']:.4f} | {r['roc_auc']:.4f} | "
              f"{r.get('accuracy_vs_floor', float('nan')):.4f} | {r['train_seconds']:.0f} | {r['eval_seconds']:.0f} |")


if __name__ == "__main__":
    main()
