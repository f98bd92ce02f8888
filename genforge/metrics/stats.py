"""The maths of image-generation metrics, on feature arrays (N, D); float64 throughout.

    fd(a, b)                 Fréchet distance between Gaussians fitted to two feature sets
    kid(a, b)                kernel inception-style distance: unbiased MMD^2, cubic polynomial kernel
    precision_recall(r, f)   k-NN manifold precision and recall (Kynkäänniemi et al., 2019)
    class_entropy(labels)    entropy (nats) of a predicted-class histogram: ln K = every class equally

The feature network is the caller's choice; every number is named with it (see `feature_net`).
"""
from __future__ import annotations

import numpy as np
import torch


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be an (N >= 2, D) array, got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def fd(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64.

    Tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of S_a S_b, which are
    real and >= 0 (the product is similar to the PSD S_a^(1/2) S_b S_a^(1/2)). Unlike a matrix
    square root this stays exact when ReLU features leave the covariances singular.
    """
    mu_a, s_a = _moments(a)
    mu_b, s_b = _moments(b)
    eig = np.linalg.eigvals(s_a @ s_b).real
    tr_covmean = np.sqrt(np.clip(eig, 0, None)).sum()
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * tr_covmean)
    return max(value, 0.0)


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> float:
    """Mean over random subsets of the unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    dim = a.shape[1]
    total = 0.0
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / dim + 1) ** 3
        kyy = (y @ y.T / dim + 1) ** 3
        kxy = (x @ y.T / dim + 1) ** 3
        total += ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()
    return float(total / subsets)


def _knn_radius(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    out = []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i:i + chunk], x)  # (chunk, N); the row itself is at distance 0
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    """Fraction of `points` inside at least one ball (centre, radius)."""
    hits = 0
    for i in range(0, len(points), chunk):
        d = torch.cdist(points[i:i + chunk], centres)  # (chunk, M)
        hits += int((d <= radii[None, :]).any(1).sum())
    return hits / len(points)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, chunk: int = 1000) -> tuple[float, float]:
    """Precision: share of fakes inside the real k-NN manifold; recall: share of reals inside the fake one."""
    r = torch.as_tensor(np.asarray(real, np.float32))
    f = torch.as_tensor(np.asarray(fake, np.float32))
    if len(r) <= k or len(f) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    precision = _covered(f, r, _knn_radius(r, k, chunk), chunk)
    recall = _covered(r, f, _knn_radius(f, k, chunk), chunk)
    return precision, recall


def class_histogram(predicted: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(predicted, np.int64), minlength=num_classes).astype(np.float64)


def class_entropy(predicted: np.ndarray, num_classes: int) -> float:
    """Entropy (nats) of the predicted-class histogram; ln(num_classes) when all are equally common."""
    p = class_histogram(predicted, num_classes)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())
