"""Short texts and stronger members: genforge classifiers on the first sentence of each IMDB review
(or on the full reviews) against a scikit-learn NB-LR tuned on the validation split.

    python benchmarks/classifier_short.py [--texts first|full] [--members nbchar,cnn] [--seeds 1337,1,2]
        [--data $GENFORGE_DATASETS/imdb] [--out DIR]
    # members DIR already holds (same name and seed) are loaded, not trained again:
    python benchmarks/classifier_short.py ... --reuse
    # IMDB full reviews, issue 13's ensemble route: two NB bags in 2^24 buckets, each chosen on validation,
    # then refitted on train + validation (fit.refit), weighted on their validation-split models, 3 seeds:
    python benchmarks/classifier_short.py --texts full --no-floor --members nbbag-b24-refit,nbbag-punct4-b24-refit \
        --seeds 1337,1,2
    # IMDB first sentences, the best route measured: the character bag and the punctuation bag, both refitted
    python benchmarks/classifier_short.py --texts first --members nbchar-punct-refit,nbbag-punct4-b24-refit \
        --seeds 1337,1,2
    # ... and beside them the Kim CNN from word vectors of the full training reviews (labels never read; the
    # benchmark writes DIR/vectors-full.safetensors first): 72.25% +- 0.08 over three seeds
    python benchmarks/classifier_short.py --texts first --no-floor \
        --members nbchar-punct-refit,nbbag-punct4-b24-refit,cnn-vec-full --seeds 1337,1,2

The data: IMDB's 25,000 training and 25,000 test reviews; with `--texts first` each is cut to its
first sentence (HTML breaks removed, leading non-word characters skipped, then up to and including
the first . ! or ?). A stratified, seeded 10% of the training texts is the validation split, written
to DIR/val.jsonl beside DIR/train.jsonl (the other 90%) and DIR/test.jsonl: every genforge member
trains on the 90% and selects its checkpoint and temperature on the 10%; the ensemble's weights (a
0.05 grid, lowest validation log loss) and its temperature come from the same 10%. A refitted member
(`fit.refit`, names ending in -refit) then trains again on the 90% and the 10% together: its validation
probabilities come from its validation-split model (checkpoints/validation.safetensors), and an ensemble
with such a member gets no extra temperature (each member keeps its own). The test split is read only
to report.

The floor: binary word n-grams scaled by naive-Bayes log-count ratios, `LogisticRegression(liblinear)`;
its n-gram range (1..1, 1..2, 1..3) and C (0.03 .. 10) are chosen by validation accuracy, then it
is refitted on all 25,000 training texts (as the -refit members are; more data than the other members
see: a conservative bar). Every row records the members' training CPU seconds (`time.process_time()`:
featurizing, tuning, training, calibration; an ensemble's is its members' sum), meaningful on a loaded
machine where wall time is not; with several seeds, a mean row per member and ensemble adds the accuracy's std and min.
With two or more members, `diversity` (printed and in results.json) says on validation what each
member would add to the first. Results: DIR/results.json and a markdown table on stdout; each member's
validation and test probabilities in DIR/<member>-s<seed>/probs.npz.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch

# name -> (preset, overrides): the members a run can train
MEMBERS = {
    "nbbag": ("nbbag", {}),
    "nbchar": ("nbchar", {}),  # nbbag + character 2..5-grams of each word
    "cnn": ("cnn", {}),
    "cnn-long": ("cnn", {"data": {"max_len": 400}}),  # full reviews: the CNN sees 400 words
    "nbchar-tri": ("nbchar", {"data": {"char_ngrams": "3,5"}}),
    "nbbag-untuned": ("nbbag", {"fit": {"tune": False}}),  # the preset as written: trigrams, 6 epochs
    # another featurisation of the same model: punctuation marks as tokens, 1..4-grams (full reviews: +0.15
    # points in an ensemble with nbbag-untuned, 3 seeds)
    "nbbag-punct4": ("nbbag", {"fit": {"tune": False}, "data": {"punctuation": True, "ngram": 4}}),
    # full reviews: the CNN over their first 256 words, narrower embeddings so 3 epochs take ~4 CPU minutes
    "cnn-256": ("cnn", {"model": {"embed_dim": 64, "hidden": 100}, "data": {"max_len": 256},
                        "fit": {"epochs": 3, "evals_per_epoch": 2}}),
    # issue 13's candidates that might differ from nbbag on full reviews (BENCHMARKS.md, "members that differ"):
    # NBSVM-style interpolation: every n-gram starts at its naive-Bayes weight and weight decay pulls it back there
    "nbsvm": ("nbbag", {"fit": {"tune": False}, "model": {"nb_prior": 1.0}, "train": {"weight_decay": 0.1}}),
    # character 3..5-grams of each word beside the word n-grams, in a bounded table of 2^20 buckets
    "nbchar-b20": ("nbchar", {"data": {"char_ngrams": "3,5", "buckets": 1 << 20}}),
    # a word-order member: one width-3 convolution (250 filters) over the last 400 of the top 5,000 words
    "cnn-imdb": ("cnn", {"model": {"embed_dim": 50, "hidden": 250, "widths": "3", "dropout": 0.2},
                         "data": {"vocab_size": 5000, "max_len": 400, "pad": "pre"},
                         "train": {"batch_size": 32}, "fit": {"epochs": 2, "evals_per_epoch": 4}}),
    # issue 13, 2026-12-02, first sentences: nbchar with punctuation marks as tokens; strong decoupled L2
    # (each step scales w by 1 - 2 lr) on both bags (BENCHMARKS.md, "Issue 13, 2026-12-02")
    "nbchar-punct": ("nbchar", {"data": {"punctuation": True}}),
    "nbchar-wd2": ("nbchar", {"train": {"weight_decay": 2.0}}),
    "nbbag-wd2": ("nbbag", {"fit": {"tune": False}, "train": {"weight_decay": 2.0}}),
    # issue 13, third attempt: the two bags of the ensemble route in 2^24 hash buckets (2^22 blurred their NB
    # ratios with collisions), and the same refitted on train + validation after choosing on validation
    "nbbag-b24": ("nbbag", {"fit": {"tune": False}, "data": {"buckets": 1 << 24}}),
    "nbbag-punct4-b24": ("nbbag", {"fit": {"tune": False}, "data": {"punctuation": True, "ngram": 4, "buckets": 1 << 24}}),
    "nbbag-b24-refit": ("nbbag", {"fit": {"tune": False, "refit": True}, "data": {"buckets": 1 << 24}}),
    "nbbag-punct4-b24-refit": ("nbbag", {"fit": {"tune": False, "refit": True},
                                         "data": {"punctuation": True, "ngram": 4, "buckets": 1 << 24}}),
    # issue 13, fourth attempt: the first sentences' character bag refitted too, in 2^22 and 2^24 buckets
    "nbchar-punct-refit": ("nbchar", {"fit": {"refit": True}, "data": {"punctuation": True}}),
    "nbchar-tri-punct-refit": ("nbchar", {"fit": {"refit": True}, "data": {"char_ngrams": "3,5", "punctuation": True}}),
    "nbchar-punct-b24-refit": ("nbchar", {"fit": {"refit": True}, "data": {"punctuation": True, "buckets": 1 << 24}}),
    # issue 13, ninth attempt: the Kim CNN from PPMI + SVD word vectors (genforge/data/vectors.py), DIR/vectors-first
    # from the 25,000 training first sentences, DIR/vectors-full from the full training reviews (labels never read);
    # fine-tuned, or static (model.freeze_vectors)
    **{f"cnn-vec-{c}{s}": ("cnn", {"model": {"vectors": f"{{out}}/vectors-{c}.safetensors", "freeze_vectors": bool(s)}})
       for c in ("first", "full") for s in ("", "-static")},
    # a GPT pre-trained on the training texts (no labels; `--gpt-init RUN`), fine-tuned: arch gpt, mean pooling
    "gpt": (None, {"train": {"batch_size": 32, "lr": 3e-4, "min_lr": 3e-5, "warmup_iters": 100, "weight_decay": 0.01},
                   "data": {"max_len": 64}, "fit": {"epochs": 3, "evals_per_epoch": 2}}),
}
_BR = re.compile(r"<br\s*/?>", re.I)
_FIRST = re.compile(r"\w[^.!?]*[.!?]?")


def refit(name: str) -> bool:
    """Whether member `name` trains again on train + validation after choosing on validation (fit.refit)."""
    return bool(MEMBERS[name][1].get("fit", {}).get("refit"))


def first_sentence(text: str) -> str:
    """The text from its first word character up to and including its first . ! or ? (HTML breaks removed)."""
    text = _BR.sub(" ", text)
    m = _FIRST.search(text)
    return m.group(0).strip() if m else text.strip()


def write_jsonl(path: Path, texts: list[str], labels: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for t, y in zip(texts, labels):
            f.write(json.dumps({"text": t, "label": y}) + "\n")


def nb_lr(train_texts, y, ngram: int, C: float):
    """scikit-learn NB-LR: (vectorizer, NB ratios r, fitted LogisticRegression)."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    from genforge.data.words import clean_text
    vec = CountVectorizer(ngram_range=(1, ngram), binary=True, preprocessor=clean_text)
    X = vec.fit_transform(train_texts)
    p = np.asarray(X[y == 1].sum(0)).ravel() + 1.0
    q = np.asarray(X[y == 0].sum(0)).ravel() + 1.0
    r = np.log(p / p.sum()) - np.log(q / q.sum())
    clf = LogisticRegression(C=C, solver="liblinear", dual=True, max_iter=1000).fit(X.multiply(r).tocsr(), y)
    return lambda texts: clf.predict_proba(vec.transform(texts).multiply(r).tocsr())


def tuned_floor(train, val, full) -> tuple[dict, object]:
    """(the chosen n-gram range and C with every grid point's validation accuracy, the refitted predict)."""
    y_tr, y_va = (np.array([int(v) for v in d.labels]) for d in (train, val))
    grid = {}
    for ngram, C in itertools.product((1, 2, 3), (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)):
        predict = nb_lr(train.texts, y_tr, ngram, C)
        grid[f"1..{ngram}, C={C}"] = float((predict(val.texts).argmax(1) == y_va).mean())
        print(f"floor grid 1..{ngram} C={C}: val acc {grid[f'1..{ngram}, C={C}']:.4f}", flush=True)
    best = max(grid, key=grid.get)
    ngram, C = int(best.split("..")[1].split(",")[0]), float(best.split("C=")[1])
    predict = nb_lr(full.texts, np.array([int(v) for v in full.labels]), ngram, C)
    return {"chosen": best, "val_accuracy": grid}, predict


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log probability (N, K) gives the true classes y (N,)."""
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1))))


def best_weights(val_probs: list[np.ndarray], y: np.ndarray) -> list[float]:
    """The weights on a 0.05 simplex grid with the lowest validation log loss of the weighted mean."""
    steps, best, best_loss = 20, None, float("inf")
    for head in itertools.product(range(steps + 1), repeat=len(val_probs) - 1):
        if sum(head) > steps:
            continue
        w = [h / steps for h in head] + [(steps - sum(head)) / steps]
        loss = log_loss(sum(wi * pi for wi, pi in zip(w, val_probs)), y)
        if loss < best_loss:
            best, best_loss = w, loss
    return best


def diversity(val_probs: list[np.ndarray], y: np.ndarray, names: list[str]) -> dict[str, dict]:
    """What each member would add to the first, on validation: its accuracy, the correlation of the two
    members' error indicators, the oracle (either right) and the best two-member blend (its weight on the
    member, accuracy and log loss; weight 0 = the member does not add)."""
    wrong0, out = val_probs[0].argmax(1) != y, {}
    for name, p in zip(names, val_probs):
        wrong = p.argmax(1) != y
        w = best_weights([val_probs[0], p], y)
        blend = w[0] * val_probs[0] + w[1] * p
        corr = np.corrcoef(wrong0, wrong)[0, 1] if wrong0.std() * wrong.std() > 0 else float("nan")
        out[name] = {"val_accuracy": float(1 - wrong.mean()), "error_correlation": float(corr),
                     "oracle": float(1 - (wrong0 & wrong).mean()), "blend_weight": w[1],
                     "blend_val_accuracy": float((blend.argmax(1) == y).mean()), "blend_val_log_loss": log_loss(blend, y)}
        print(f"validation {name:16s} acc {out[name]['val_accuracy']:.4f}  error corr with {names[0]} {corr:.2f}  "
              f"oracle {out[name]['oracle']:.4f}  blend {w[1]:.2f} x it: acc {out[name]['blend_val_accuracy']:.4f} "
              f"log loss {out[name]['blend_val_log_loss']:.4f}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(Path(os.environ.get("GENFORGE_DATASETS", "../shared/datasets")) / "imdb"))
    ap.add_argument("--texts", choices=["first", "full"], default="first")
    ap.add_argument("--members", default="nbchar,cnn", help="comma-separated names of MEMBERS; all are ensembled")
    ap.add_argument("--seeds", default="1337", help="train.seed of each repetition (the split stays seed 1337's)")
    ap.add_argument("--no-floor", action="store_true", help="skip the scikit-learn floor")
    ap.add_argument("--out", default="runs/bench-classifier-short")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (train.threads)")
    ap.add_argument("--gpt-init", help="the GPT run the gpt members start from (pre-trained on the training "
                    "texts without their labels)")
    ap.add_argument("--reuse", action="store_true", help="load members DIR already holds (same name and seed, "
                    "trained by an earlier call with the same --texts) instead of training them again")
    args = ap.parse_args()

    import genforge
    from genforge.data.labelled import encode_labels, read_labelled, read_texts, stratified_split
    from genforge.families import classifier as C
    from genforge.metrics.classification import classification_metrics
    from genforge.models.classifier import probabilities

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cut = first_sentence if args.texts == "first" else (lambda t: t)
    sets = {}
    for split in ("train", "test"):
        with gzip.open(f"{args.data}/{split}.jsonl.gz", "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        sets[split] = ([cut(r["text"]) for r in rows], [str(r["label"]) for r in rows])
    write_jsonl(out / "all_train.jsonl", *sets["train"])
    write_jsonl(out / "test.jsonl", *sets["test"])
    full, test = read_labelled(str(out / "all_train.jsonl")), read_labelled(str(out / "test.jsonl"))
    labels = ["0", "1"]
    tr, va = stratified_split(encode_labels(full, labels), 0.1, 1337)
    train, val = full.subset(tr), full.subset(va)
    write_jsonl(out / "train.jsonl", train.texts, train.labels)
    write_jsonl(out / "val.jsonl", val.texts, val.labels)
    y_test, y_val = encode_labels(test, labels), encode_labels(val, labels)
    print(f"{args.texts}: {len(train):,} train / {len(val):,} val / {len(test):,} test texts, "
          f"{np.mean([len(t.split()) for t in full.texts]):.1f} words on average", flush=True)
    for corpus in ("first", "full"):  # word vectors from the training texts, without their labels; never the test's
        if any(f"-vec-{corpus}" in n for n in args.members.split(",")) and not (out / f"vectors-{corpus}.safetensors").exists():
            from genforge.data.vectors import ppmi_svd, save_vectors
            texts = full.texts if corpus == "first" else read_texts(f"{args.data}/train.jsonl.gz").texts
            save_vectors(str(out / f"vectors-{corpus}.safetensors"), *ppmi_svd(texts))
    rows: dict[str, dict] = {}
    div: dict[str, dict] = {}  # seed -> each member against the first, on validation

    def record(name, probs, seconds, what, cpu=float("nan")):
        m = classification_metrics(y_test, probs, labels)
        rows[name] = {k: m[k] for k in ("accuracy", "f1", "roc_auc", "ece", "log_loss")}
        rows[name].update(seconds=seconds, train_cpu_seconds=cpu, what=what)
        print(f"{name:24s} acc {m['accuracy']:.4f}  F1 {m['f1']:.4f}  AUC {m['roc_auc']:.4f}  "
              f"ECE {m['ece']:.4f}  {seconds:5.0f}s  train {cpu:5.0f} CPU s  {what}", flush=True)
        (out / "results.json").write_text(json.dumps({"texts": args.texts, "rows": rows}, indent=2))  # so far

    if not args.no_floor:
        t0 = time.perf_counter()
        info, predict = tuned_floor(train, val, full)
        record("sklearn-nblr-tuned", predict(test.texts), time.perf_counter() - t0, f"chosen {info['chosen']}")
        rows["sklearn-nblr-tuned"]["grid"] = info["val_accuracy"]
    names = args.members.split(",")
    for seed in [int(s) for s in args.seeds.split(",")]:
        runs, val_probs, test_probs, seconds, cpu_total = [], [], [], 0.0, 0.0
        for name in names:
            preset, ov = MEMBERS[name]
            ov = {k: dict(v) for k, v in ov.items()}
            ov.setdefault("data", {}).update(path=str(out / "train.jsonl"), val_path=str(out / "val.jsonl"))
            ov.setdefault("train", {}).update(seed=seed, threads=args.threads)
            if "vectors" in ov.get("model", {}):
                ov["model"]["vectors"] = ov["model"]["vectors"].format(out=out)
            run, t0 = out / f"{name}-s{seed}", time.perf_counter()
            if args.reuse and (run / "bench.json").exists():  # trained by an earlier call: its seconds as measured
                spent, saved = json.loads((run / "bench.json").read_text()), np.load(run / "probs.npz")
                val_p, test_p = saved["val"], saved["test"]
            else:
                shutil.rmtree(run, ignore_errors=True)
                c0 = time.process_time()
                if preset is None and not args.gpt_init:
                    raise SystemExit(f"member {name}: needs --gpt-init RUN")
                C.train(preset, ov, out=str(run), progress=False, init_from=args.gpt_init if preset is None else None)
                # featurizing + tuning + training + calibration, all threads
                spent = {"seconds": time.perf_counter() - t0, "train_cpu_seconds": time.process_time() - c0}
                pipe = genforge.load(run)
                # a refitted member trained on the validation texts: its validation-split model answers for them
                judge = genforge.load(run / "checkpoints" / "validation.safetensors") if refit(name) else pipe
                val_p, test_p = judge.predict_proba(val.texts), pipe.predict_proba(test.texts)
                np.savez(run / "probs.npz", val=val_p, test=test_p)
                (run / "bench.json").write_text(json.dumps(spent))
            seconds += spent["seconds"]
            cpu = spent["train_cpu_seconds"]
            cpu_total += cpu
            runs.append(str(run))
            val_probs.append(val_p)
            test_probs.append(test_p)
            what = f"preset {preset}" if preset else f"init from {args.gpt_init}"
            record(f"{name} s{seed}", test_p, spent["seconds"], f"{what} {json.dumps(ov)}", cpu)
        if len(runs) > 1:
            div[f"s{seed}"] = diversity(val_probs, y_val, names)
            w = best_weights(val_probs, y_val)
            run = out / f"ensemble-s{seed}"
            shutil.rmtree(run, ignore_errors=True)
            # no ensemble temperature over refitted members (they saw the validation texts): each keeps its own
            C.ensemble(runs, str(run), weights=w, val_path=None if any(map(refit, names)) else str(out / "val.jsonl"))
            # what genforge.load(run).predict_proba(test.texts) gives, from the members' test probabilities:
            # softmax(log(weighted mean) / the ensemble's temperature)
            p = np.log(np.clip(sum(wi * pi for wi, pi in zip(w, test_probs)), 1e-12, 1))
            probs = probabilities(torch.from_numpy(p) / genforge.load(run).temperature).numpy()
            record(f"{'+'.join(names)} s{seed}", probs, seconds,
                   " + ".join(f"{wi:.2f} x {n}" for wi, n in zip(w, names)) + " (validation log loss)", cpu_total)
    seeds = args.seeds.split(",")
    for model in [*names, "+".join(names)] if len(seeds) > 1 else []:  # mean ± std over the seeds
        runs = [rows[f"{model} s{s}"] for s in seeds if f"{model} s{s}" in rows]
        if runs:
            rows[f"{model} mean"] = {k: float(np.mean([r[k] for r in runs])) for k in
                                     ("accuracy", "f1", "roc_auc", "ece", "log_loss", "seconds", "train_cpu_seconds")}
            rows[f"{model} mean"].update(accuracy_std=float(np.std([r["accuracy"] for r in runs])),
                                         accuracy_min=min(r["accuracy"] for r in runs), what=f"seeds {seeds}")
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "texts": args.texts, "load": os.getloadavg(), "rows": rows,
            "diversity": div}
    (out / "results.json").write_text(json.dumps(info, indent=2))
    print("\n| model | test acc | F1 | ROC-AUC | ECE |\n|---|---|---|---|---|")
    for name, r in rows.items():
        std = f" ± {r['accuracy_std']:.4f} (min {r['accuracy_min']:.4f})" if "accuracy_std" in r else ""
        print(f"| {name} | {r['accuracy']:.4f}{std} | {r['f1']:.4f} | {r['roc_auc']:.4f} | {r['ece']:.4f} |")


if __name__ == "__main__":
    main()
