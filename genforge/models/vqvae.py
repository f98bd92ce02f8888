"""The VQ-VAE: a discrete image tokenizer (stage 1 of text-to-image), convolutional or article 002's MLP.

    genforge train vqvae --data ../shared/datasets/mnist                 # conv: 28x28 -> 7x7 codes
    genforge train vqvae --data ../shared/datasets/mnist --preset ae002  # Linear autoencoder, BCE

    vq = VQVAE(VQVAEConfig())
    codes = vq.encode(x)         # float (B, C, H, W) in [-1, 1] -> long (B, L), L = vq.code_length
    x_hat = vq.decode(codes)     # -> float (B, C, H, W) in [-1, 1]
    x_hat, losses = vq(x)        # training: reconstruction + commitment, straight-through gradients

The encoder maps an image to L vectors (a grid of h x w cells for `conv`, `groups` slices of z for
`mlp`); the quantizer replaces each vector by its nearest code. Two quantizers:
- `vq`: a codebook of `codebook_size` vectors, learned by an exponential moving average of the
  encoder outputs assigned to each code (no codebook gradient), initialised by k-means on the
  first training batch, with codes unused for `dead_after` batches re-seeded from encoder outputs;
- `fsq` (finite scalar quantisation): each of len(fsq_levels) dimensions is bounded and rounded
  to one of its levels; the code is the mixed-radix number of the digits, and there is no codebook
  to collapse (codebook_size = prod(fsq_levels)).
Gradients pass the quantizer straight through (z + (q - z).detach()); a commitment loss pulls the
encoder towards its codes. With `mse` the decoder's output is the image (clamped to [-1, 1] when
decoding; a tanh would saturate on MNIST's black background and stop learning); with `bce` it is a
logit per pixel, the image 2 * sigmoid - 1, and the loss the binary cross-entropy with (x + 1) / 2.

`from_state(config dict, tensors)` rebuilds a tokenizer from a checkpoint's config and weights alone
(a text-to-image run keeps both in its own checkpoint).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class VQVAEConfig:
    arch: Literal["conv", "mlp"] = "conv"  # conv: strided convs to a code grid; mlp: article 002's Linear AE
    image_size: int = 28  # conv: divisible by 4 (28 -> 7x7 codes, 32 -> 8x8)
    channels: int = 1  # 1 grey, 3 RGB
    width: int = 64  # conv: channels of the hidden layers; mlp: hidden units
    res_blocks: int = 2  # conv: residual blocks at the code resolution, in encoder and decoder
    groups: int = 16  # mlp: codes per image (z is split into this many slices)
    leak: float = 0.0  # LeakyReLU slope of the hidden layers (0 = ReLU; article 002: 0.2)
    dropout: float = 0.0  # mlp: dropout after the hidden layer (article 002: 0.3)
    loss: Literal["mse", "bce"] = "mse"  # reconstruction loss (article 002: bce)
    quantizer: Literal["vq", "fsq"] = "vq"
    codebook_size: int = 512  # vq: codes K
    code_dim: int = 16  # vq: size of each code vector (small codes stay in use)
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)  # fsq: levels per dimension; K = their product
    commitment: float = 0.25  # weight of ||z - sg(q)||^2
    ema_decay: float = 0.99  # vq: decay of the codebook's moving averages
    kmeans_iters: int = 10  # vq: Lloyd iterations initialising the codebook on the first batch; 0 = random
    dead_after: int = 50  # vq: batches a code may go unused before it is re-seeded; 0 = never

    def validate(self):
        if self.arch == "conv" and (self.image_size < 8 or self.image_size % 4):
            raise ValueError(f"model.image_size={self.image_size}: the conv VQ-VAE needs a multiple of 4 (>= 8)")
        if self.channels not in (1, 3) or self.width < 4 or self.res_blocks < 0 or self.groups < 1:
            raise ValueError("model.channels must be 1 or 3, model.width >= 4, model.res_blocks >= 0, model.groups >= 1")
        if not 0.0 <= self.dropout < 1.0 or self.leak < 0:
            raise ValueError(f"model.dropout must be in [0, 1) and model.leak >= 0, got {self.dropout}, {self.leak}")
        if self.codebook_size < 2 or self.code_dim < 1:
            raise ValueError(f"model.codebook_size must be >= 2 and model.code_dim >= 1, got "
                             f"{self.codebook_size}, {self.code_dim}")
        if not self.fsq_levels or min(self.fsq_levels) < 2:
            raise ValueError(f"model.fsq_levels must be a non-empty list of levels >= 2, got {self.fsq_levels}")
        if not 0.0 <= self.ema_decay < 1.0 or self.commitment < 0 or self.kmeans_iters < 0 or self.dead_after < 0:
            raise ValueError("model.ema_decay must be in [0, 1); model.commitment, kmeans_iters, dead_after >= 0")


# ----------------------------------------------------------------------------- quantizers


def kmeans(x: torch.Tensor, k: int, iters: int, gen: torch.Generator | None = None) -> torch.Tensor:
    """k centroids (k, D) of the rows of x (N, D): k-means++ seeding (each next row drawn with probability
    proportional to its squared distance from the rows drawn so far), then `iters` Lloyd steps."""
    picks = [int(torch.randint(0, len(x), (1,), generator=gen))]
    d2 = torch.full((len(x),), float("inf"))
    for _ in range(k - 1):
        d2 = torch.minimum(d2, (x - x[picks[-1]]).pow(2).sum(1))
        picks.append(int(torch.multinomial(d2 + 1e-12, 1, generator=gen)))  # +eps: N < k repeats rows
    centroids = x[picks].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centroids).argmin(1)
        counts = torch.bincount(assign, minlength=k).float()  # (k,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
    return centroids


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation with an EMA codebook, k-means initialisation and dead-code restart.

    Buffers (all in checkpoints): codebook (K, D); the EMA statistics cluster_size (K) and
    embed_sum (K, D); idle (K), batches since each code was last chosen; restarts, the codes
    re-seeded so far; ready, whether the codebook was initialised.
    """

    def __init__(self, c: VQVAEConfig):
        super().__init__()
        self.k, self.dim, self.decay, self.eps = c.codebook_size, c.code_dim, c.ema_decay, 1e-5
        self.kmeans_iters, self.dead_after = c.kmeans_iters, c.dead_after
        codebook = torch.randn(self.k, self.dim)
        self.register_buffer("codebook", codebook)
        self.register_buffer("cluster_size", torch.ones(self.k))
        self.register_buffer("embed_sum", codebook.clone())
        self.register_buffer("idle", torch.zeros(self.k))
        self.register_buffer("restarts", torch.zeros(()))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> long (N,): the nearest code of each row (squared Euclidean distance)."""
        d = z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.t() + self.codebook.pow(2).sum(1)  # (N, K)
        return d.argmin(1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.codebook)

    @torch.no_grad()
    def _init(self, z: torch.Tensor) -> None:
        c = kmeans(z, self.k, self.kmeans_iters) if self.kmeans_iters else z[torch.randint(0, len(z), (self.k,))]
        self.codebook.copy_(c)
        self.embed_sum.copy_(c)
        self.cluster_size.fill_(1.0)
        self.ready.fill_(True)

    @torch.no_grad()
    def update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        """One training batch's EMA codebook update and dead-code restart (z (N, D), idx (N,))."""
        onehot = F.one_hot(idx, self.k).to(z.dtype)  # (N, K)
        counts = onehot.sum(0)
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embed_sum.lerp_(onehot.t() @ z, 1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.k * self.eps) * n  # Laplace: no division by 0
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self.idle.add_(1).masked_fill_(counts > 0, 0)
        dead = (self.idle >= self.dead_after).nonzero().flatten() if self.dead_after else idx[:0]
        if len(dead):
            seeds = z[torch.randint(0, len(z), (len(dead),))]
            self.codebook[dead], self.embed_sum[dead] = seeds, seeds
            self.cluster_size[dead], self.idle[dead] = 1.0, 0.0
            self.restarts.add_(len(dead))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (N, D) -> (q straight-through (N, D), codes (N,), commitment loss)."""
        z32 = z.float()
        if self.training and not self.ready:
            self._init(z32.detach())
        idx = self.indices(z32.detach())
        q = self.lookup(idx)  # the codes as chosen, before this batch moves them
        if self.training:
            self.update(z32.detach(), idx)
        commit = F.mse_loss(z32, q.detach())
        return z32 + (q - z32).detach(), idx, commit


class FSQ(nn.Module):
    """Finite scalar quantisation: each dimension bounded by tanh, rounded to one of its levels."""

    def __init__(self, c: VQVAEConfig):
        super().__init__()
        self.dim, self.k = len(c.fsq_levels), math.prod(c.fsq_levels)
        levels = torch.tensor(c.fsq_levels)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), levels[:-1]]), 0),
                             persistent=False)

    def _round(self, z: torch.Tensor) -> torch.Tensor:
        """(N, D) -> integer-valued (N, D) in [-(L // 2), (L - 1) // 2] per dimension, straight-through."""
        half = (self.levels - 1) * (1 - 1e-3) / 2
        offset = (self.levels % 2 == 0).float() / 2  # even levels: the grid is shifted by half a step
        bounded = torch.tanh(z + torch.atanh(offset / half)) * half - offset
        return bounded + (bounded.round() - bounded).detach()

    def _index(self, q: torch.Tensor) -> torch.Tensor:
        digits = q.detach().round().long() + self.levels // 2  # (N, D) in [0, L)
        return (digits * self.basis).sum(1)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        return self._index(self._round(z.float()))

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        digits = idx[:, None] // self.basis % self.levels  # (N, D)
        return (digits - self.levels // 2).float() / (self.levels // 2)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self._round(z.float())
        return q / (self.levels // 2), self._index(q), z.new_zeros(())


# ----------------------------------------------------------------------------- encoder and decoder


class ResBlock(nn.Module):
    def __init__(self, width: int, leak: float):
        super().__init__()
        self.net = nn.Sequential(nn.LeakyReLU(leak), nn.Conv2d(width, width, 3, padding=1),
                                 nn.LeakyReLU(leak), nn.Conv2d(width, width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def conv_coder(c: VQVAEConfig, dim: int) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder): (B, C, S, S) -> (B, dim, S/4, S/4) through two stride-2 convs, and back."""
    w, act = c.width, nn.LeakyReLU(c.leak)
    enc = nn.Sequential(nn.Conv2d(c.channels, w // 2, 4, 2, 1), act, nn.Conv2d(w // 2, w, 4, 2, 1), act,
                        nn.Conv2d(w, w, 3, padding=1), *[ResBlock(w, c.leak) for _ in range(c.res_blocks)],
                        nn.LeakyReLU(c.leak), nn.Conv2d(w, dim, 1))
    dec = nn.Sequential(nn.Conv2d(dim, w, 3, padding=1), *[ResBlock(w, c.leak) for _ in range(c.res_blocks)],
                        nn.LeakyReLU(c.leak), nn.ConvTranspose2d(w, w // 2, 4, 2, 1), act,
                        nn.ConvTranspose2d(w // 2, c.channels, 4, 2, 1))
    return enc, dec


def mlp_coder(c: VQVAEConfig, dim: int) -> tuple[nn.Module, nn.Module]:
    """Article 002: Linear -> LeakyReLU -> Dropout -> z (groups * dim), and the mirror image back."""
    pixels = c.channels * c.image_size ** 2
    enc = nn.Sequential(nn.Flatten(), nn.Linear(pixels, c.width), nn.LeakyReLU(c.leak), nn.Dropout(c.dropout),
                        nn.Linear(c.width, c.groups * dim))
    dec = nn.Sequential(nn.Linear(c.groups * dim, c.width), nn.LeakyReLU(c.leak), nn.Dropout(c.dropout),
                        nn.Linear(c.width, pixels), nn.Unflatten(1, (c.channels, c.image_size, c.image_size)))
    return enc, dec


# ----------------------------------------------------------------------------- the model


class VQVAE(nn.Module):
    def __init__(self, config: VQVAEConfig):
        super().__init__()
        config.validate()
        self.config = c = config
        self.quantizer = FSQ(c) if c.quantizer == "fsq" else VectorQuantizer(c)
        self.dim, self.codebook_size = self.quantizer.dim, self.quantizer.k
        self.grid = (c.image_size // 4, c.image_size // 4) if c.arch == "conv" else (1, c.groups)
        self.code_length = self.grid[0] * self.grid[1]
        self.encoder, self.decoder = (conv_coder if c.arch == "conv" else mlp_coder)(c, self.dim)

    def _vectors(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> encoder outputs (B * L, D), cell by cell in row-major order."""
        z = self.encoder(x)
        if self.config.arch == "conv":
            return z.permute(0, 2, 3, 1).reshape(-1, self.dim)  # (B, dim, h, w) -> (B*h*w, dim)
        return z.reshape(-1, self.dim)  # (B, groups*dim) -> (B*groups, dim)

    def _logits(self, q: torch.Tensor, batch: int) -> torch.Tensor:
        """Quantised vectors (B * L, D) -> the decoder's output (B, C, H, W): pixels (mse) or logits (bce)."""
        if self.config.arch == "conv":
            h, w = self.grid
            return self.decoder(q.reshape(batch, h, w, self.dim).permute(0, 3, 1, 2))  # (B, dim, h, w)
        return self.decoder(q.reshape(batch, -1))  # (B, groups*dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x (B, C, H, W) in [-1, 1] -> (reconstruction in [-1, 1], {'loss', 'recon', 'commit', 'codes'})."""
        z = self._vectors(x)
        with torch.autocast(z.device.type, enabled=False):  # distances and the EMA in fp32 under bf16 autocast
            q, idx, commit = self.quantizer(z.float())
        out = self._logits(q, len(x)).float()
        if self.config.loss == "bce":
            recon = F.binary_cross_entropy_with_logits(out, (x.float() + 1) / 2)
        else:
            recon = F.mse_loss(out, x.float())
        loss = recon + self.config.commitment * commit
        return self._image(out), {"loss": loss, "recon": recon, "commit": commit, "codes": idx.view(len(x), -1)}

    def _image(self, out: torch.Tensor) -> torch.Tensor:
        """The decoder's output -> the image in [-1, 1]."""
        return 2 * torch.sigmoid(out) - 1 if self.config.loss == "bce" else out.clamp(-1, 1)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """float (B, C, H, W) in [-1, 1] -> long codes (B, L)."""
        z = self._vectors(x)
        with torch.autocast(z.device.type, enabled=False):
            return self.quantizer.indices(z.float()).view(len(x), -1)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """long codes (B, L) -> float (B, C, H, W) in [-1, 1]."""
        if codes.ndim != 2 or codes.shape[1] != self.code_length:
            raise ValueError(f"codes: expected shape (B, {self.code_length}), got {tuple(codes.shape)}")
        if len(codes) and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must be in 0..{self.codebook_size - 1}, got {codes.min()}..{codes.max()}")
        return self._image(self._logits(self.quantizer.lookup(codes.flatten()), len(codes)).float())


def from_state(config: dict, tensors: dict[str, torch.Tensor]) -> VQVAE:
    """A VQVAE (eval mode) from its config as a dict (e.g. JSON) and its state_dict; bad fields are ValueErrors."""
    unknown = sorted(set(config) - {f.name for f in fields(VQVAEConfig)})
    if unknown:
        raise ValueError(f"vqvae config: unknown field(s) {', '.join(unknown)}")
    c = dict(config)
    if "fsq_levels" in c:
        c["fsq_levels"] = tuple(c["fsq_levels"])  # a JSON list
    model = VQVAE(VQVAEConfig(**c))
    model.load_state_dict(tensors)
    return model.eval()
