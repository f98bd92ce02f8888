"""Training-time text augmentation for the classifier family: word (feature) dropout on each training batch.

    genforge train classifier --data reviews.jsonl --fit.word_dropout=0.1

Every time a training text is drawn, each of its features is dropped with probability p: its hashed
n-grams for the bag models (what a dropped word would remove, with the n-grams around it counted apart),
its tokens for the sequence models (the rest close up, padding stays where the featurizer put it). Each text
keeps at least its first feature. Drawn from the trainer's generator, so a seeded run repeats; validation,
calibration and test texts are never touched. Measured in BENCHMARKS.md ("Word dropout").
Tests: pytest tests/families/test_classifier_augment.py
"""
from __future__ import annotations

import torch


def drop_bag(ids: torch.Tensor, offsets: torch.Tensor, p: float, gen: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (total,) with text b owning ids[offsets[b]:offsets[b + 1]] -> the kept ids and their offsets (B,)."""
    keep = torch.rand(ids.numel(), generator=gen) >= p  # (total,)
    keep[offsets[offsets < ids.numel()]] = True  # every text keeps its first id
    sizes = torch.diff(offsets, append=offsets.new_tensor([ids.numel()]))  # (B,)
    owner = torch.repeat_interleave(torch.arange(offsets.numel()), sizes)  # (total,) text of each id
    kept = torch.bincount(owner[keep], minlength=offsets.numel())  # (B,)
    return ids[keep], torch.cumsum(kept, 0) - kept


def drop_tokens(ids: torch.Tensor, lengths: torch.Tensor, pad: str, p: float, gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, T) padded with 0 ('pre': padding first, 'post': padding last), lengths (B,) -> the same layout
    with the dropped tokens removed and the kept ones closed up in order."""
    B, T = ids.shape
    pos = torch.arange(T)[None, :]  # (1, T)
    real = pos >= (T - lengths)[:, None] if pad == "pre" else pos < lengths[:, None]  # (B, T)
    keep = real & (torch.rand(B, T, generator=gen) >= p)
    first = (T - lengths) if pad == "pre" else torch.zeros_like(lengths)  # (B,) each text's first token
    keep[torch.arange(B), first] = True
    # a stable sort on the keep flag moves kept tokens to the end ('pre') or the front ('post'), in order
    order = torch.sort((keep if pad == "pre" else ~keep).to(torch.int8), dim=1, stable=True).indices  # (B, T)
    new_len = keep.sum(1)  # (B,)
    out = torch.gather(ids * keep, 1, order)  # dropped tokens become 0 (padding) before they move
    return out, new_len
