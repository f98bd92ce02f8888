"""The default preset tunes itself on the validation split: a small seeded search by successive halving.

    genforge train classifier --data reviews.jsonl                      # nbbag: tunes, says what it chose
    genforge train classifier --data reviews.jsonl --fit.tune=false     # the preset as written
    genforge train classifier --data reviews.jsonl --fit.tune_budget=12 --fit.tune_seconds=120

`search` draws `fit.tune_trials` settings from SPACE (the preset as written always among them, so the
search can only keep or beat it on validation), trains each for RUNGS[0] epochs, keeps the better half
for RUNGS[1] epochs, and so on, ranking by the preset's selection metric on the validation split (the
validation loss for nbbag), measured once, after the trial's last step. The test split is never read: `trial` trains on the training split and
reports a validation number. The search stops early when the next trial would pass `fit.tune_budget`
epochs (summed over trials: deterministic) or `fit.tune_seconds` of wall time (0 = no clock; a clock
makes the choice depend on the machine's load). The best trial's settings, epochs included, are the
run's: printed, saved in config.json and the checkpoint's metadata (`tune`), and in every metrics.json.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

# each axis: settings tried together ("section.field": value); an axis naming a field the config
# lacks (e.g. data.char_ngrams before char features exist) is left out
SPACE: list[list[dict[str, Any]]] = [
    [{"data.ngram": 2}, {"data.ngram": 3}],  # n-gram range 1..n
    [{"model.nb_alpha": 0.5}, {"model.nb_alpha": 1.0}],  # NB smoothing count
    [{"train.weight_decay": 0.0, "fit.l1": 0.0}, {"train.weight_decay": 0.5, "fit.l1": 0.0},
     {"train.weight_decay": 0.0, "fit.l1": 1e-5}],  # regularisation: none, L2 (decoupled), L1
]
RUNGS = (2, 4, 8)  # epochs of each successive-halving rung


def apply(cfg: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of `cfg` with "section.field" settings replaced."""
    out = dict(cfg)
    for name, value in settings.items():
        section, field = name.split(".")
        out[section] = dataclasses.replace(out[section], **{field: value})
    return out


def candidates(cfg: dict[str, Any], n: int, seed: int, fixed: set[str] = frozenset()) -> list[dict[str, Any]]:
    """The preset's own values on every axis first, then up to n - 1 other grid points, seeded; axes
    naming a `fixed` setting (given on the command line) are not searched."""
    axes = [axis for axis in SPACE if all(hasattr(cfg[k.split(".")[0]], k.split(".")[1]) and k not in fixed
                                          for s in axis for k in s)]
    own = {k: getattr(cfg[k.split(".")[0]], k.split(".")[1]) for axis in axes for k in axis[0]}
    grid = [{}]
    for axis in axes:
        grid = [{**g, **s} for g in grid for s in axis]
    grid = [g for g in grid if g != own]
    order = np.random.default_rng(seed).permutation(len(grid))
    return [own] + [grid[i] for i in order[:n - 1]]


def search(cfg: dict[str, Any], trial: Callable[[dict[str, Any]], float], fixed: set[str] = frozenset()
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the tuned cfg, a record of the choice and every trial); `trial(cfg)` trains on the training split
    and returns the validation selection metric (lower is better). Settings in `fixed` are kept; a fixed
    fit.epochs makes one rung of that many epochs."""
    fit = cfg["fit"]
    metric = {"accuracy": "val_error"}.get(fit.select, "val_loss")
    pool = candidates(cfg, fit.tune_trials, cfg["train"].seed, fixed)
    trials: list[dict[str, Any]] = []
    spent, t0, stopped = 0.0, time.perf_counter(), None
    for rung, epochs in enumerate((fit.epochs,) if "fit.epochs" in fixed else RUNGS):
        scored = []
        for settings in pool:
            clock = fit.tune_seconds and trials and (time.perf_counter() - t0) * (1 + epochs / spent) > fit.tune_seconds
            if trials and (spent + epochs > fit.tune_budget or clock):
                stopped = "seconds" if clock else "budget"
                break
            chosen = {**settings, "fit.epochs": epochs}
            score = trial(apply(cfg, {**chosen, "fit.tune": False, "fit.calibrate": False}))
            spent += epochs
            trials.append({**chosen, "score": score})
            scored.append((score, len(scored), settings))
            print(f"genforge: tune {len(trials)} (rung {rung + 1}): {_say(chosen)}: {metric} {score:.4f}",
                  file=sys.stderr)
        pool = [s for _, _, s in sorted(scored)[:max(1, len(scored) // 2)]]
        if stopped or len(scored) <= 1:
            break
    best = min(trials, key=lambda t: t["score"])
    chosen = {k: v for k, v in best.items() if k != "score"}
    print(f"genforge: tuned on the validation split ({len(trials)} trials, {spent:g} epochs"
          f"{', stopped by fit.tune_' + stopped if stopped else ''}): {_say(chosen)}; --fit.tune=false keeps the "
          "preset as written", file=sys.stderr)
    record = {"chosen": chosen, "metric": metric, "trials": trials, "epochs_spent": spent,
              "seconds": time.perf_counter() - t0}
    return apply(cfg, chosen), record


def _say(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[1]} {v:g}" if isinstance(v, float) else f"{k.split('.')[1]} {v}"
                     for k, v in settings.items())
