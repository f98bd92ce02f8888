"""The caption-conditioned GAN's caption encoder, and G and D built around it.

    genforge train captiongan --data captions.jsonl      # genforge/families/captiongan.py trains it

A caption is its word ids (B, T) from genforge/data/captions.py (PAD = 0 after the words). The
encoder embeds words and positions, runs `n_layer` non-causal transformer blocks of the GPT family
over the real words (padding is never attended to), mean-pools them and maps the result through a
small MLP to the width its user needs:
- G: a unit-scale (B, z_dim) vector added to the latent (the class GAN's embedding, read from words);
- D: a (B, features) vector for the projection term, logit = psi(phi(x)) + <E(c), phi(x)>.
G and D each own an encoder. The empty caption (all PAD) pools to zero, so its embedding is a
learned constant: the unconditional mode that caption dropout trains.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..data.captions import PAD
from .classifier import pool
from .gan import GANConfig, Generator, Discriminator, _sn
from .gan import build as build_gan
from .gpt import Block, GPTConfig


@dataclass
class CaptionEncoderConfig:
    vocab_size: int = 0  # 0 = the size of the data's caption vocabulary
    text_len: int = 16  # caption context in words; longer prompts are an error
    dim: int = 64  # word embedding and transformer width
    n_layer: int = 1  # non-causal transformer blocks over the words; 0 = mean of the word embeddings
    n_head: int = 2
    drop_caption: float = 0.1  # share of training captions replaced by the empty caption (unconditional)
    mismatch: float = 0.0  # weight of D's loss on real images paired with another image's caption; 0 = off

    def validate(self):
        if self.vocab_size < 0 or self.text_len < 1 or self.dim < 2 or self.n_layer < 0 or self.n_head < 1:
            raise ValueError("text.vocab_size must be >= 0, text_len >= 1, dim >= 2, n_layer >= 0, n_head >= 1")
        if self.dim % self.n_head:
            raise ValueError(f"text.dim={self.dim} must be divisible by text.n_head={self.n_head}")
        if not 0.0 <= self.drop_caption < 1.0 or self.mismatch < 0:
            raise ValueError(f"text.drop_caption must be in [0, 1) and text.mismatch >= 0, got "
                             f"{self.drop_caption}, {self.mismatch}")


class CaptionEncoder(nn.Module):
    """word ids (B, T) -> (B, out_dim); spectral norm on the output layers when `sn` (D's encoder).

    `unit` (G's encoder) layer-normalises the output: unit scale, like the N(0, 1) rows of the class
    GAN's embedding, so G hears the caption beside z from the first step (unnormalised, the MLP's
    output is several times smaller than z and MNIST digits stayed unconditioned for hundreds of steps).
    """

    def __init__(self, c: CaptionEncoderConfig, out_dim: int, sn: bool = False, unit: bool = False):
        super().__init__()
        assert c.vocab_size > 0, "the caption encoder needs text.vocab_size"
        g = GPTConfig(vocab_size=c.vocab_size, block_size=c.text_len, n_layer=max(1, c.n_layer), n_head=c.n_head,
                      n_embd=c.dim, bias=True, norm="layernorm", qk_norm=False, activation="gelu", pos="learned")
        self.wte = nn.Embedding(c.vocab_size, c.dim)
        self.wpe = nn.Embedding(c.text_len, c.dim)
        self.blocks = nn.ModuleList(Block(g, causal=False) for _ in range(c.n_layer))
        self.out = nn.Sequential(_sn(nn.Linear(c.dim, c.dim), sn), nn.LeakyReLU(0.2), _sn(nn.Linear(c.dim, out_dim), sn),
                                 *([nn.LayerNorm(out_dim)] if unit else []))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        T = ids.size(1)
        real = ids != PAD  # (B, T)
        x = self.wte(ids) + self.wpe(torch.arange(T, device=ids.device))  # (B, T, dim)
        visible = real | ~real.any(1, keepdim=True)  # an empty caption attends over its padding (never all-masked)
        for block in self.blocks:
            x = block(x, mask=visible[:, None, None, :])  # (B, 1, 1, T)
        return self.out(pool(x, real, "mean"))  # (B, out_dim); the empty caption pools to zeros


def make_generator(mc: GANConfig, tc: CaptionEncoderConfig) -> Generator:
    return Generator(mc, CaptionEncoder(tc, mc.z_dim, unit=True))


def build(mc: GANConfig, tc: CaptionEncoderConfig) -> tuple[Generator, Discriminator]:
    """G and D (an unconditional GANConfig: the caption encoders are the conditioning), DCGAN-initialised."""
    assert mc.num_classes == 0, "a caption GAN is conditioned on captions, not classes (model.num_classes = 0)"
    return build_gan(mc, CaptionEncoder(tc, mc.z_dim, unit=True), lambda n: CaptionEncoder(tc, n, sn=mc.spectral_norm))
