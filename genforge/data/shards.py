"""Each training process's share of the data: the global batch as micro-batch slots, each with its own stream.

    shares = Shares(seed=1337, count=4, slot=1)       # the trainer keeps one (`trainer.shares`)
    idx = shares.permutation(n, epoch)[...]           # this slot's part of epoch `epoch`'s order
    starts = shares.window_starts(n_tokens, 256, 32, generator)

One optimizer step draws the global batch, batch_size x train.grad_accum examples, as train.grad_accum
micro-batches: the slots s = 0..S-1, S = grad_accum. Rank r of W processes runs micro-steps m = 0..S/W-1,
slot s = r x S/W + m. Every slot has its own random stream (the trainer's generator and torch's RNG,
seeded seed + s) and reads a disjoint share of the data:

- examples (images, labelled text, caption/code pairs): every epoch a permutation seeded from the run
  seed, the epoch and the set's size, the same on every rank without a word between them; slot s takes
  entries s, s + S, s + 2S, ... of its first (n // S) x S (the DistributedSampler split);
- token files: the file as blocks of block_size tokens; slot s reads windows that start in blocks
  s, s + S, s + 2S, ... (rank-strided windows: each rank touches its own pages of the memmap).

So one process with grad_accum 4 draws exactly the batches 2 processes with grad_accum 4 (2 micro-steps
each) or 4 processes draw: the recipe is the same on any world size. With one slot (grad_accum 1 on one
process) every draw is the generator's, as it was before slots: such runs are bit-identical to them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Shares:
    seed: int  # the run seed (train.seed)
    count: int = 1  # S: micro-batch slots of one optimizer step over all processes (train.grad_accum)
    slot: int = 0  # the slot being drawn now; the trainer moves it at every micro-step

    def permutation(self, n: int, epoch: int) -> torch.Tensor:
        """Epoch `epoch`'s order of n examples, the same for every slot (`mine` picks the slot's part)."""
        if n < self.count:
            raise ValueError(f"{n} training example(s) cannot be split into train.grad_accum={self.count} "
                             "micro-batch shares; use more data or a smaller --train.grad_accum")
        g = torch.Generator().manual_seed(self.seed + 1_000_003 * (epoch + 1) + 7919 * n)
        return torch.randperm(n, generator=g)

    def mine(self, perm: torch.Tensor) -> torch.Tensor:
        """This slot's disjoint part of an epoch's permutation: every S-th entry from the slot's own."""
        return perm[self.slot:len(perm) // self.count * self.count:self.count]

    def window_starts(self, n_tokens: int, block: int, k: int, gen: torch.Generator) -> torch.Tensor:
        """k random window starts (each window block + 1 tokens) in this slot's blocks of a token split."""
        m = n_tokens - block  # the windows start at 0..m-1
        if self.count == 1:
            return torch.randint(m, (k,), generator=gen)
        full, rest = divmod(m, block)  # blocks with `block` starts each, then one with `rest`
        n = max(0, (full - self.slot + self.count - 1) // self.count) * block
        n += rest if full % self.count == self.slot else 0
        if n == 0:
            raise ValueError(f"the train split ({n_tokens} tokens) has no block of {block} tokens for micro-batch "
                             f"share {self.slot} of train.grad_accum={self.count}; use more data, a smaller "
                             "--model.block_size or a smaller --train.grad_accum")
        i = torch.randint(n, (k,), generator=gen)
        return (i // block * self.count + self.slot) * block + i % block
