"""Image classifiers: a small CNN and a small ResNet, and article 004's image augmentation.

    genforge train imageclf --data mnist [--preset cnn|resnet] [--aug.crop=2 --aug.rotate=10 --aug.flip=true]

Reads in the order the networks run: the augmentation (applied to training batches only), the two
bodies, the config, then the model that owns the head and the loss. Inputs are float (B, C, H, W)
in [-1, 1] (genforge/metrics/feature_net.to_input's layout); the head gives K logits and the loss
is the text classifier's `classification_loss` (cross-entropy, optional class weights).

Axis legend: B batch, C channels, H = W image size, K classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from .classifier import classification_loss

# ----------------------------------------------------------------------------- augmentation


def augment(x: torch.Tensor, gen: torch.Generator, crop: int = 0, rotate: float = 0.0,
            flip: bool = False) -> torch.Tensor:
    """Random crop (pad by `crop` pixels, crop back: a shift of up to ±crop pixels, the border
    black), rotation by up to ±`rotate` degrees and (with `flip`) a horizontal flip with probability
    1/2, per image, as one affine resampling. x (B, C, H, W) in [-1, 1]; draws from `gen` only."""
    if not (crop or rotate or flip):
        return x
    B, _, H, W = x.shape
    shift = torch.randint(-crop, crop + 1, (B, 2), generator=gen).float()  # (B, 2) pixels (dx, dy)
    angle = (torch.rand(B, generator=gen) * 2 - 1) * math.radians(rotate)  # (B,)
    mirror = torch.where(torch.rand(B, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(B)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos * mirror, -sin, 2 * shift[:, 0] / W], 1),
                         torch.stack([sin * mirror, cos, 2 * shift[:, 1] / H], 1)], 1).to(x)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    # resample x + 1 so that the zeros grid_sample fills in are black (-1), then shift back
    return F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1

# ----------------------------------------------------------------------------- bodies


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out))


class CNNBody(nn.Module):
    """`stages` of conv 3x3 -> BatchNorm -> ReLU -> max-pool 2, doubling the width each stage, then
    a hidden dense layer: (B, C, H, W) -> (B, hidden)."""

    def __init__(self, cfg: ImageClassifierConfig):
        super().__init__()
        layers, c = [], cfg.channels
        for i in range(cfg.stages):
            layers += [conv_bn(c, cfg.width << i), nn.ReLU(), nn.MaxPool2d(2)]  # (B, width * 2^i, H / 2^(i+1), ..)
            c = cfg.width << i
        side = cfg.image_size >> cfg.stages
        self.convs = nn.Sequential(*layers, nn.Flatten())  # (B, c * side * side)
        self.fc = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(c * side * side, cfg.hidden), nn.ReLU())
        self.out_dim = cfg.hidden

    def forward(self, x):
        return self.fc(self.convs(x))


class ResBlock(nn.Module):
    """Two conv-BN layers with an identity (or 1x1 strided projection) shortcut, ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.a, self.b = conv_bn(c_in, c_out, stride), conv_bn(c_out, c_out)
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.b(F.relu(self.a(x))) + self.skip(x))


class ResNetBody(nn.Module):
    """A stem conv, then `stages` stages of `blocks` residual blocks (width doubling, stride 2 from the
    second stage on), global average pooling: (B, C, H, W) -> (B, width * 2^(stages-1))."""

    def __init__(self, cfg: ImageClassifierConfig):
        super().__init__()
        layers, c = [conv_bn(cfg.channels, cfg.width), nn.ReLU()], cfg.width
        for i in range(cfg.stages):
            for j in range(cfg.blocks):
                layers.append(ResBlock(c, cfg.width << i, 2 if i > 0 and j == 0 else 1))
                c = cfg.width << i
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(cfg.dropout))  # (B, c)
        self.out_dim = c

    def forward(self, x):
        return self.net(x)

# ----------------------------------------------------------------------------- model


@dataclass
class ImageClassifierConfig:
    arch: Literal["cnn", "resnet"] = "cnn"
    image_size: int = 28  # images are resized to image_size x image_size when loaded
    channels: int = 1  # 1 = grey, 3 = RGB
    num_classes: int = 0  # set from the data
    width: int = 32  # channels of the first stage (doubled at each further stage)
    stages: int = 2  # cnn: conv + pool stages (image_size must divide by 2^stages); resnet: width stages
    blocks: int = 1  # resnet: residual blocks per stage
    hidden: int = 128  # cnn: the dense layer before the head
    dropout: float = 0.0  # before the dense layer (cnn) or the head (resnet)

    def validate(self):
        for name in ("image_size", "width", "stages", "blocks", "hidden"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.channels not in (1, 3):
            raise ValueError(f"model.channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if self.arch == "cnn" and self.image_size % (1 << self.stages):
            raise ValueError(f"model.image_size {self.image_size} must divide by 2^model.stages = {1 << self.stages}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


class ImageClassifier(nn.Module):
    def __init__(self, cfg: ImageClassifierConfig):
        super().__init__()
        assert cfg.num_classes >= 2, "num_classes is set from the data before the model is built"
        self.config = cfg
        self.body = CNNBody(cfg) if cfg.arch == "cnn" else ResNetBody(cfg)
        self.head = nn.Linear(self.body.out_dim, cfg.num_classes)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None, class_weight: torch.Tensor | None = None):
        """x (B, C, H, W) in [-1, 1] -> (logits (B, K), loss or None)."""
        logits = self.head(self.body(x))
        loss = None if targets is None else classification_loss(logits, targets, class_weight)
        return logits, loss
