"""What the text and the image classifier families share: epochs to steps, calibrating the best
checkpoint, the metrics report with its plots, and k-fold cross-validation.

    genforge train classifier --data reviews.jsonl      genforge train imageclf --data mnist
    genforge cv --folds 5 --data reviews.jsonl          genforge cv --family imageclf --data mnist --folds 5

Both families (genforge/families/classifier.py, genforge/families/imageclf.py) train through
`classifier.ClassifierTask` and call these, so a text run and an image run report the same metrics
(genforge/metrics/classification.py) with the same temperature scaling (genforge/metrics/calibration.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoint
from ..data.labelled import stratified_folds, stratified_split
from ..metrics import calibration
from ..metrics import classification as cm
from ..models.classifier import probabilities
from ..runtime import main_process


def epochs_to_steps(cfg: dict[str, Any], n_train: int) -> None:
    """fit.epochs > 0: set train.max_iters (epochs over `n_train` examples) and train.eval_interval in `cfg`."""
    fit, tc = cfg["fit"], cfg["train"]
    if fit.epochs > 0:
        per_epoch = math.ceil(n_train / (tc.batch_size * tc.grad_accum))
        cfg["train"] = dataclasses.replace(tc, max_iters=max(1, round(fit.epochs * per_epoch)),
                                           eval_interval=max(1, per_epoch // fit.evals_per_epoch))


def temperature(meta: dict[str, Any]) -> float:
    """The checkpoint's fitted temperature; 1 for checkpoints from before calibration existed."""
    t = float((meta.get("calibration") or {}).get("temperature", 1.0))
    if not (t > 0 and math.isfinite(t)):
        raise ValueError(f"checkpoint metadata calibration.temperature must be a positive number, got {t}")
    return t


def calibrate_checkpoint(ckpt: Path, logits: torch.Tensor, y: torch.Tensor, enabled: bool = True,
                         items: str = "texts") -> float:
    """Fit a temperature on validation `logits` (never test data) and write it into the checkpoint's
    metadata (`calibration`), where every pipeline finds it; enabled=False records T = 1."""
    t = calibration.fit_temperature(logits, y) if enabled else 1.0
    info = {"method": "temperature" if enabled else "none", "temperature": t, "fitted_on": "validation",
            "n": len(y), "val_nll": calibration.nll(logits, y), "val_nll_calibrated": calibration.nll(logits, y, t)}
    tensors, meta = checkpoint.load(ckpt)
    checkpoint.save(ckpt, tensors, {**meta, "calibration": info})
    if enabled:
        print(f"genforge: calibrated on {len(y):,} validation {items}: temperature {t:.3f} (validation NLL "
              f"{info['val_nll']:.4f} -> {info['val_nll_calibrated']:.4f}); saved in {ckpt}", file=sys.stderr)
        if min(abs(math.log(t / b)) for b in calibration.BOUNDS) < 1e-3:
            print(f"genforge: the temperature is at the end of its range {calibration.BOUNDS}: the validation "
                  "split is likely too small or perfectly separated; --fit.calibrate=false keeps T = 1", file=sys.stderr)
    return t


def report(y: np.ndarray, logits: torch.Tensor, temp: float, labels: list[str], out: Path | None = None,
           **extra) -> dict:
    """Every metric of the calibrated probabilities softmax(logits / temp), plus `ece_uncalibrated`,
    `log_loss_uncalibrated` (the raw probabilities'), the `temperature` and `extra`; with `out`,
    metrics.json, roc.png and confusion.png there."""
    probs, raw = probabilities(logits / temp).numpy(), probabilities(logits).numpy()
    metrics = cm.classification_metrics(y, probs, labels)
    uncal = cm.classification_metrics(y, raw, labels)
    metrics.update(ece_uncalibrated=uncal["ece"], log_loss_uncalibrated=uncal["log_loss"], temperature=temp, **extra)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        cm.plot_roc(y, probs, labels, out / "roc.png")
        cm.plot_confusion(metrics["confusion_matrix"], labels, out / "confusion.png")
    return metrics


def cross_validate(y: np.ndarray, folds: int, seed: int, val_fraction: float, root: Path, labels: list[str],
                   run_fold: Callable[[int, np.ndarray, np.ndarray | None, np.ndarray], dict]) -> dict:
    """Stratified k-fold cross-validation over examples with classes `y`: for each fold k,
    `run_fold(k, train_idx, val_idx or None, test_idx)` trains on the other folds (a stratified
    `val_fraction` of them held out for early stopping) and returns the held-out fold's metrics.
    Writes ROOT/cv.json; returns per-fold metrics and the mean and std of each."""
    results = []
    for k, test_idx in enumerate(stratified_folds(y, folds, seed)):
        rest = np.setdiff1d(np.arange(len(y)), test_idx)
        train_idx, val_idx = rest, None
        if val_fraction > 0:
            tr, va = stratified_split(y[rest], val_fraction, seed + k)
            train_idx, val_idx = rest[tr], rest[va]
        metrics = run_fold(k, train_idx, val_idx, test_idx)
        results.append(metrics)
        if main_process():  # under torchrun every rank trains the folds; rank 0 reports and writes cv.json
            print(f"genforge: fold {k + 1}/{folds}: accuracy {metrics['accuracy']:.4f}, "
                  f"macro F1 {metrics['macro']['f1']:.4f}", file=sys.stderr)
    summary = {"folds": folds, "labels": labels, "summary": cm.summarize(results), "per_fold": results}
    if not main_process():
        return summary
    root.mkdir(parents=True, exist_ok=True)
    (root / "cv.json").write_text(json.dumps(summary, indent=2))
    return summary
