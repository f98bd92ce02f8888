"""genforge.images: [-1, 1] tensors to uint8, grids with padding, PIL conversion with scaling, grid PNGs."""
import numpy as np
import pytest
import torch
from PIL import Image

from genforge import images


def test_to_uint8_maps_the_range_clamps_and_moves_channels_last():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0, -7.0, 0.5]).reshape(1, 1, 2, 3)  # (B, C, H, W)
    out = images.to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 3, 1)
    assert out[0, ..., 0].tolist() == [[0, 128, 255], [255, 0, 191]]
    rgb = images.to_uint8(torch.stack([torch.full((4, 5), v) for v in (-1.0, 0.0, 1.0)])[None])
    assert rgb.shape == (1, 4, 5, 3) and rgb[0, 0, 0].tolist() == [0, 128, 255]


def test_make_grid_rgb_padding_and_errors():
    imgs = np.zeros((3, 4, 5, 3), np.uint8)
    grid = images.make_grid(imgs, ncols=2, pad=3)
    assert grid.shape == (2 * (4 + 3) + 3, 2 * (5 + 3) + 3, 3)
    assert (grid[:3] == 255).all() and (grid[3:7, 3:8] == 0).all()
    assert (grid[10:14, 11:16] == 255).all()  # the short last row leaves its tail white
    assert images.make_grid(imgs, ncols=10, pad=0).shape == (4, 15, 3)  # ncols capped at n
    with pytest.raises(ValueError, match="make_grid: expected a non-empty"):
        images.make_grid(np.zeros((0, 4, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="ncols must be >= 1"):
        images.make_grid(imgs, ncols=0)


def test_to_pil_grey_and_rgb_with_scaling():
    grey = images.to_pil(np.array([[[0], [255]]], np.uint8), scale=3)
    assert grey.mode == "L" and grey.size == (6, 3)
    assert np.asarray(grey)[:, :3].max() == 0 and np.asarray(grey)[:, 3:].min() == 255  # nearest pixels
    rgb = images.to_pil(np.zeros((2, 2, 3), np.uint8))
    assert rgb.mode == "RGB" and rgb.size == (2, 2)
    with pytest.raises(ValueError, match="scale must be >= 1"):
        images.to_pil(np.zeros((2, 2, 1), np.uint8), scale=0)


def test_save_grid_writes_a_png_of_the_grid(tmp_path):
    imgs = np.stack([np.full((3, 3, 1), 40 * i, np.uint8) for i in range(4)])
    path = images.save_grid(imgs, tmp_path / "g.png", ncols=2, scale=2, pad=1)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (2 * (2 * 4 + 1), 2 * (2 * 4 + 1))
        back = np.asarray(img)
    assert np.array_equal(back[::2, ::2], images.make_grid(imgs, 2, 1)[..., 0])
