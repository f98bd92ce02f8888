"""Classification metrics (scikit-learn does the maths) and their plots.

    genforge eval RUN --data test.jsonl     # writes RUN/eval/<data>/metrics.json, roc.png, confusion.png

`classification_metrics(y, probs, labels)` gives accuracy, precision / recall / F1 per class and
macro-averaged, ROC-AUC, the confusion matrix, expected calibration error and log loss. For two
classes, `precision`, `recall` and `f1` at the top level are those of the second (positive) class.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)  # bin (lo, hi]
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def classification_metrics(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    """Every metric of predictions `probs` (N, K) against true class indices `y` (N,)."""
    from sklearn import metrics as skm
    y = np.asarray(y)
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(1, keepdims=True)  # float32 rounding: rows sum to 1 again
    K = len(labels)
    pred = probs.argmax(1)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=list(range(K)), zero_division=0)
    out: dict = {"n": int(len(y)), "accuracy": float(skm.accuracy_score(y, pred))}
    out["per_class"] = {labels[k]: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                                    "support": int(s[k])} for k in range(K)}
    out["macro"] = {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f.mean())}
    if K == 2:
        out.update(precision=float(p[1]), recall=float(r[1]), f1=float(f[1]))
    present = np.unique(y)
    if len(present) < 2:
        out["roc_auc"] = None  # undefined with one class in the data
    elif K == 2:
        out["roc_auc"] = float(skm.roc_auc_score(y, probs[:, 1]))
    elif len(present) == K:
        out["roc_auc"] = float(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    else:
        out["roc_auc"] = None
    out["log_loss"] = float(skm.log_loss(y, np.clip(probs, 1e-12, 1.0), labels=list(range(K))))
    out["ece"] = expected_calibration_error(y, probs)
    out["confusion_matrix"] = skm.confusion_matrix(y, pred, labels=list(range(K))).tolist()
    out["labels"] = list(labels)
    return out


def scalars(metrics: dict, prefix: str = "") -> dict[str, float]:
    """Flatten nested metrics to {'accuracy': .., 'per_class.pos.f1': ..} (numbers only)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(scalars(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("n", "support"):
            out[f"{prefix}{k}"] = float(v)
    return out


def summarize(folds: list[dict]) -> dict[str, dict[str, float]]:
    """{metric: {'mean', 'std'}} over folds (population std; metrics missing in a fold are skipped)."""
    flat = [scalars(m) for m in folds]
    keys = [k for k in flat[0] if all(k in f and not math.isnan(f[k]) for f in flat)]
    return {k: {"mean": float(np.mean([f[k] for f in flat])), "std": float(np.std([f[k] for f in flat]))}
            for k in keys}


def plot_roc(y: np.ndarray, probs: np.ndarray, labels: list[str], path: Path) -> None:
    """ROC curve (one per class, one-vs-rest, when there are more than two)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import auc, roc_curve
    fig, ax = plt.subplots(figsize=(5, 5))
    classes = [1] if len(labels) == 2 else range(len(labels))
    for k in classes:
        if (y == k).any() and (y != k).any():
            fpr, tpr, _ = roc_curve(y == k, probs[:, k])
            ax.plot(fpr, tpr, label=f"{labels[k]} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    m = np.asarray(matrix)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
