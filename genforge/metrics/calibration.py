"""Temperature scaling: one scalar T > 0 that divides a classifier's logits, fitted on validation data.

    genforge train classifier --data train.jsonl              # fits T on the validation split (default)
    genforge train classifier --data train.jsonl --fit.calibrate=false   # T = 1: raw probabilities

`fit_temperature(logits, y)` minimises the validation negative log-likelihood of `logits / T` over
log T with a bounded 1-D search (the NLL is convex in 1/T, so the search finds its minimum).
Logits are (N, 1) for two classes (the sigmoid's one logit: the same T divides it) or (N, K).
T > 1 softens an over-confident model, T < 1 sharpens an under-confident one; argmax never moves.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

BOUNDS = (0.05, 20.0)  # T is searched here; a perfectly separated (or tiny) validation split drives T to 0.05


def nll(logits: torch.Tensor, y: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `logits / temperature` (float64) against class indices y (N,)."""
    z = logits.double() / temperature
    if z.size(1) == 1:
        return float(F.binary_cross_entropy_with_logits(z[:, 0], y.double()))
    return float(F.cross_entropy(z, y.long()))


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The T in BOUNDS that minimises nll(logits / T, y); 1.0 when there is nothing to fit on."""
    from scipy.optimize import minimize_scalar
    if len(y) == 0:
        return 1.0
    assert logits.dim() == 2 and logits.size(0) == len(y), f"logits {tuple(logits.shape)} vs {len(y)} labels"
    lo, hi = (math.log(b) for b in BOUNDS)
    res = minimize_scalar(lambda log_t: nll(logits, y, math.exp(log_t)), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-5})
    t = math.exp(float(res.x))
    return t if nll(logits, y, t) < nll(logits, y, 1.0) else 1.0  # never worse than leaving the logits alone
