"""Pixels out: model outputs -> uint8 images, grids, PIL images and PNG files, for every image family.

    from genforge import images
    images.save_grid(images.to_uint8(g.sample(64)), "grid.png", ncols=8, scale=2)

Everything here works on uint8 (N, H, W, C) arrays (or turns a model's [-1, 1] tensor into one),
the layout `generate()` returns, the server encodes and the feature network reads. It lives
beside the families, not in `data/`: `data/` reads data sets in (numpy, no torch), this module
renders what generators make (a GAN, a text-to-image prior's decoder, a synthetic-data tool).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a tensor comes in: the ONNX runtime renders grids without it
    import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> uint8 (B, H, W, C); values outside [-1, 1] are clamped."""
    import torch
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def make_grid(images: np.ndarray, ncols: int = 8, pad: int = 2) -> np.ndarray:
    """uint8 (N, H, W, C) -> one uint8 (rows*(H+pad)+pad, cols*(W+pad)+pad, C) image, row by row.

    White padding between and around the images; a short last row leaves its tail white.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"make_grid: expected a non-empty uint8 (N, H, W, C) array, got shape {images.shape}")
    if ncols < 1 or pad < 0:
        raise ValueError(f"make_grid: ncols must be >= 1 and pad >= 0, got ncols={ncols}, pad={pad}")
    n, h, w, c = images.shape
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top: top + h, left: left + w] = images[i]
    return grid


def to_pil(array: np.ndarray, scale: int = 1):
    """uint8 (H, W, C) -> a PIL image (grey for C = 1), enlarged `scale` times with nearest pixels."""
    from PIL import Image
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST) if scale > 1 else img


def grid_image(images: np.ndarray, ncols: int = 8, scale: int = 1, pad: int = 2):
    """uint8 (N, H, W, C) -> the grid as a PIL image."""
    return to_pil(make_grid(images, ncols, pad), scale)


def save_grid(images: np.ndarray, path: str | Path, ncols: int = 8, scale: int = 1, pad: int = 2) -> Path:
    """Write uint8 (N, H, W, C) images as one grid PNG at `path` (its folder must exist); returns the path."""
    path = Path(path)
    grid_image(images, ncols, scale, pad).save(path, format="PNG")
    return path
