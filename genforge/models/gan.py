"""GAN generators and discriminators: the MLP GAN (article 000) and DCGAN (article 003).

    genforge train gan --preset mlp      # z 100 -> 256 -> 512 -> 784 tanh; D 784 -> 512 -> 256 -> 1
    genforge train gan --preset dcgan    # Linear 7*7*128 -> 2 stride-2 transposed convs -> conv k7 tanh

Both come unconditional or conditional: the generator adds an embedding of the condition to its
latent, the discriminator adds a projection term <embed(y), features> to its logit (the projection
discriminator). The condition is a class (an nn.Embedding, built here) or anything a caller's
embedding module reads, e.g. a caption's word ids (genforge/models/captiongan.py). Spectral
normalisation of the discriminator is a config switch, so is a minibatch-standard-deviation feature
(diversity, issue 14); `mode_seeking_loss` is MSGAN's term for the generator. Images are
(B, C, H, W) floats in [-1, 1]; the discriminator returns one logit per image.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F


def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer


class MinibatchStd(nn.Module):
    """Appends one channel: the standard deviation over the batch, averaged over features and positions.

    A generator that makes the same image for every z gives batches with a small value here, which D
    learns to tell from real batches (StyleGAN's minibatch-std, one group = the whole batch).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = (x.float().var(0, unbiased=False) + 1e-8).sqrt().mean().to(x.dtype)  # scalar
        return torch.cat([x, std.expand_as(x[:, :1])], 1)  # (B, C + 1[, H, W])


@dataclass
class GANConfig:
    arch: Literal["mlp", "dcgan"] = "dcgan"
    image_size: int = 28  # output side in pixels (dcgan: 28, 32 or 64)
    channels: int = 1  # 1 grey, 3 RGB
    z_dim: int = 100  # latent size
    num_classes: int = 0  # 0 = unconditional; >0 adds a class embedding (G) and projection (D)
    g_width: int = 128  # dcgan: channels of G's first transposed convs (article: 128)
    d_width: int = 64  # dcgan: channels of D's first conv, doubled per layer (article: 64/128/256/512)
    g_norm: Literal["batch", "none"] = "batch"  # dcgan G: BatchNorm after each hidden layer
    mlp_hidden: tuple[int, ...] = (256, 512)  # mlp G hidden sizes; D uses them reversed
    leak: float = 0.2  # LeakyReLU slope (article 003's D uses 0.01)
    spectral_norm: bool = False  # spectral normalisation on every D layer
    minibatch_std: bool = False  # D's last features get one more: the batch's mean feature std (diversity)

    def validate(self):
        if self.arch == "dcgan" and self.image_size not in (28, 32, 64):
            raise ValueError(f"model.image_size={self.image_size}: dcgan supports 28, 32 or 64")
        if self.image_size < 4 or self.channels not in (1, 3):
            raise ValueError(f"model.image_size must be >= 4 and model.channels 1 or 3, got "
                             f"{self.image_size}, {self.channels}")
        if self.z_dim <= 0 or self.num_classes < 0 or self.g_width < 8 or self.d_width < 4:
            raise ValueError("model.z_dim must be > 0, num_classes >= 0, g_width >= 8, d_width >= 4")


# ----------------------------------------------------------------------------- MLP (article 000)


class MLPGenerator(nn.Module):
    def __init__(self, c: GANConfig):
        super().__init__()
        self.c = c
        layers, n = [], c.z_dim
        for h in c.mlp_hidden:
            layers += [nn.Linear(n, h), nn.LeakyReLU(c.leak)]
            n = h
        layers += [nn.Linear(n, c.channels * c.image_size ** 2), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).view(-1, self.c.channels, self.c.image_size, self.c.image_size)  # (B, C, H, W)


class MLPDiscriminatorBody(nn.Module):
    def __init__(self, c: GANConfig):
        super().__init__()
        layers, n = [nn.Flatten()], c.channels * c.image_size ** 2
        for h in reversed(c.mlp_hidden):
            layers += [_sn(nn.Linear(n, h), c.spectral_norm), nn.LeakyReLU(c.leak)]
            n = h
        if c.minibatch_std:
            layers, n = layers + [MinibatchStd()], n + 1
        self.net, self.out_features = nn.Sequential(*layers), n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, features)


# ----------------------------------------------------------------------------- DCGAN (article 003)


def _dcgan_plan(size: int) -> tuple[int, int]:
    """(start side, stride-2 upsamplings): 28 = 7*2*2, 32 = 8*2*2, 64 = 8*2*2*2."""
    return {28: (7, 2), 32: (8, 2), 64: (8, 3)}[size]


class DCGANGenerator(nn.Module):
    def __init__(self, c: GANConfig):
        super().__init__()
        self.c = c
        self.start, ups = _dcgan_plan(c.image_size)
        norm = (lambda n: nn.BatchNorm2d(n)) if c.g_norm == "batch" else (lambda n: nn.Identity())
        self.fc = nn.Linear(c.z_dim, c.g_width * self.start ** 2)
        self.fc_norm = nn.BatchNorm1d(c.g_width * self.start ** 2) if c.g_norm == "batch" else nn.Identity()
        widths = [c.g_width] + [c.g_width // 2 ** max(0, i - 1) for i in range(ups)]  # 128, 128, 128[, 64]
        blocks = []
        for cin, cout in zip(widths[:-1], widths[1:]):
            blocks += [nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1, bias=False),
                       norm(cout), nn.ReLU()]
        self.up = nn.Sequential(*blocks)
        self.to_image = nn.Conv2d(widths[-1], c.channels, 7, padding=3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc_norm(self.fc(h)))
        x = x.view(-1, self.c.g_width, self.start, self.start)  # (B, 128, 7, 7)
        x = self.up(x)  # (B, 128, 28, 28)
        return torch.tanh(self.to_image(x))  # (B, C, 28, 28)


class DCGANDiscriminatorBody(nn.Module):
    def __init__(self, c: GANConfig):
        super().__init__()
        layers, cin, side = [], c.channels, c.image_size
        for i in range(4):  # 64, 128, 256, 512 channels; each halves the side (28 -> 14 -> 7 -> 4 -> 2)
            cout = c.d_width * 2 ** i
            layers += [_sn(nn.Conv2d(cin, cout, 5, stride=2, padding=2), c.spectral_norm), nn.LeakyReLU(c.leak)]
            cin, side = cout, math.ceil(side / 2)
        if c.minibatch_std:
            layers, cin = layers + [MinibatchStd()], cin + 1
        self.net = nn.Sequential(*layers, nn.Flatten())
        self.out_features = cin * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 512 * 2 * 2)


# ----------------------------------------------------------------------------- G and D


class Generator(nn.Module):
    """z (B, z_dim) [+ labels (B,)] -> images (B, C, H, W) in [-1, 1].

    `embed` maps a condition to a (B, z_dim) vector; default: a class embedding when num_classes > 0.
    """

    def __init__(self, c: GANConfig, embed: nn.Module | None = None):
        super().__init__()
        self.config = c
        self.embed = embed if embed is not None else nn.Embedding(c.num_classes, c.z_dim) if c.num_classes else None
        self.body = MLPGenerator(c) if c.arch == "mlp" else DCGANGenerator(c)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            assert labels is not None, "a conditional generator needs labels"
            z = z + self.embed(labels)  # a learned class vector shifts the latent: G's first layer sees a per-class bias
        return self.body(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
        """n images in [-1, 1] from seeded noise, in eval mode (restores the mode it found)."""
        was = self.training
        self.eval()
        try:
            dev = next(self.parameters()).device
            if z is None:
                z = torch.randn(n, self.config.z_dim, generator=generator, device=generator.device if generator else dev)
            return self(z.to(dev), None if labels is None else labels.to(dev))
        finally:
            self.train(was)  # also when generating fails (bad labels, out of memory)


    @torch.no_grad()
    def standing_stats(self, batches: int = 16, size: int = 256, seed: int = 0x5EED,
                       conditions: torch.Tensor | None = None) -> None:
        """Replace BatchNorm running statistics by averages over fixed-seed batches in train mode.

        For a weight-averaged (EMA) generator, whose copied statistics belong to other weights.
        Conditions are drawn uniformly from the rows of `conditions` (default: every class). No-op
        without BatchNorm.
        """
        norms = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
        dev = next(self.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        was = self.training
        self.train()
        for _ in range(batches):
            z = torch.randn(size, self.config.z_dim, generator=gen).to(dev)
            labels = None
            if conditions is not None:
                labels = conditions[torch.randint(0, len(conditions), (size,), generator=gen)].to(dev)
            elif self.config.num_classes:
                labels = torch.randint(0, self.config.num_classes, (size,), generator=gen).to(dev)
            self(z, labels)
        self.train(was)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


class Discriminator(nn.Module):
    """images (B, C, H, W) [+ labels (B,)] -> logits (B,).

    `project(out_features)` builds the module mapping a condition to (B, out_features); default: a
    class embedding when num_classes > 0.
    """

    def __init__(self, c: GANConfig, project: Callable[[int], nn.Module] | None = None):
        super().__init__()
        self.config = c
        self.body = MLPDiscriminatorBody(c) if c.arch == "mlp" else DCGANDiscriminatorBody(c)
        self.head = _sn(nn.Linear(self.body.out_features, 1), c.spectral_norm)
        if project is None and c.num_classes:
            project = lambda n: _sn(nn.Embedding(c.num_classes, n), c.spectral_norm)  # noqa: E731
        self.project = project(self.body.out_features) if project else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        logit = self.head(h).squeeze(1)
        if self.project is not None:
            assert labels is not None, "a conditional discriminator needs labels"
            logit = logit + (self.project(labels) * h).sum(1)  # projection: <embed(y), features>
        return logit


def init_weights(m: nn.Module) -> None:
    """DCGAN's N(0, 0.02) initialisation for conv layers (BatchNorm scales around 1)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def build(c: GANConfig, embed: nn.Module | None = None,
          project: Callable[[int], nn.Module] | None = None) -> tuple[Generator, Discriminator]:
    g, d = Generator(c, embed), Discriminator(c, project)
    if c.arch == "dcgan":
        g.apply(init_weights)
        d.apply(init_weights)
    return g, d


# ----------------------------------------------------------------------------- losses


def d_fake_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """D's loss on logits of what it must call fake: generated images (or real ones with a wrong caption)."""
    if kind in ("minimax", "nonsaturating"):
        return F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 + fake).mean()
    if kind == "wgan-gp":
        return fake.mean()
    raise ValueError(f"gan.loss={kind!r}: expected minimax, nonsaturating, hinge or wgan-gp")


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss from logits on real and generated images."""
    if kind in ("minimax", "nonsaturating"):  # binary cross-entropy: real -> 1, fake -> 0
        return F.softplus(-real).mean() + d_fake_loss(kind, fake)
    if kind == "hinge":
        return F.relu(1 - real).mean() + d_fake_loss(kind, fake)
    return d_fake_loss(kind, fake) - real.mean()  # wgan-gp (or the error for an unknown kind)


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss from D's logits on generated images."""
    if kind == "minimax":
        return -F.softplus(fake).mean()  # min log(1 - D(G(z))) = -softplus(logit)
    if kind == "nonsaturating":
        return F.softplus(-fake).mean()  # -log D(G(z))
    if kind in ("hinge", "wgan-gp"):
        return -fake.mean()
    raise ValueError(f"gan.loss={kind!r}: expected minimax, nonsaturating, hinge or wgan-gp")


def mode_seeking_loss(x1: torch.Tensor, x2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                      eps: float = 1e-5) -> torch.Tensor:
    """MSGAN: 1 / (ratio + eps), ratio = mean over pairs of mean|x1 - x2| / mean|z1 - z2|.

    Each pair (x1[i], x2[i]) is two images of one condition from latents z1[i], z2[i]; minimising
    this pushes G to map distant latents to distant images (fewer collapsed modes).
    """
    dx = (x1 - x2).abs().flatten(1).mean(1)  # (B,)
    dz = (z1 - z2).abs().flatten(1).mean(1)  # (B,)
    return 1.0 / ((dx / dz).mean() + eps)


def gradient_penalty(d: Discriminator, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP: mean over samples of (||grad_x D(x_hat)||_2 - 1)^2 at per-sample interpolates."""
    x_hat = (alpha.view(-1, 1, 1, 1) * real + (1 - alpha.view(-1, 1, 1, 1)) * fake).requires_grad_(True)
    out = d(x_hat, labels)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(d: Discriminator, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """R1: mean squared gradient norm of D's logit at real images."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(d(real, labels).sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


def diff_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """DiffAugment (colour + translation), differentiable, applied to real and fake alike."""
    b = x.shape[0]
    r = lambda *s: torch.rand(*s, generator=generator, device=x.device)  # noqa: E731
    x = x + (r(b, 1, 1, 1) - 0.5)  # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (r(b, 1, 1, 1) + 0.5) + mean  # contrast
    side = x.shape[-1]
    shift = side // 8
    dx, dy = [(r(b) * (2 * shift + 1)).long() - shift for _ in range(2)]
    padded = F.pad(x, (shift, shift, shift, shift))
    rows = (torch.arange(side, device=x.device)[None, :] + dy[:, None] + shift)  # (B, H)
    cols = (torch.arange(side, device=x.device)[None, :] + dx[:, None] + shift)  # (B, W)
    idx_b = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx_b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
