"""The captiongan family: a caption-conditioned DCGAN, the GAN route to text-to-image (issue 12 sec. 3).

    genforge train captiongan --data captions.jsonl                     # (image, caption) rows
    genforge train captiongan --data ../shared/datasets/mnist           # captions from the labels' templates
    genforge sample RUN --prompt "a handwritten seven" --n 16 --out grid.png
    genforge eval RUN

A caption encoder (word embeddings of the run's CaptionVocab, a small non-causal transformer, mean
pooling, an MLP) feeds G, whose latent it shifts; D is a projection discriminator on its own
caption encoder: logit = psi(phi(x)) + <E(c), phi(x)> (genforge/models/captiongan.py). Training is
the GAN family's: `CaptionGANTask` is a `GANTask` whose conditions are captions' word ids, so the
losses, n_critic, R1 / gradient penalty, DiffAugment, EMA, TTUR, mode seeking, the monitor and
checkpoints are shared. A share `text.drop_caption` of training captions (in D's and G's phases)
is the empty caption, which is what a prompt with no known word gets; `text.mismatch` adds D's
loss on real images paired with another image's caption (mismatched-caption negatives). Labelled sets without
captions get them from the phrasing templates (genforge/data/templates.py `captioned`).
`CaptionGANPipeline` follows base.TextToImagePipeline; a GAN has no guidance scale (an error if given).
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import config
from ..data import images as image_data, templates
from ..data.captions import UNK, CaptionVocab
from ..images import make_grid, to_pil, to_uint8
from ..models.captiongan import CaptionEncoderConfig, build as build_models, make_generator
from ..models.gan import GANConfig, Generator, d_fake_loss
from ..run import RunDir
from ..runtime import Runtime
from ..trainer import Result
from . import base, gan

FAMILY = "captiongan"
DESCRIPTION = "text-to-image GAN: a caption-conditioned DCGAN with a projection discriminator"
METRICS = gan.METRICS


def sections() -> dict[str, Any]:
    return {**gan.sections(), "text": CaptionEncoderConfig()}


# the stabilised cdcgan recipe (hinge, spectral norm, TTUR, EMA, linear decay) with captions for classes,
# and mismatched-caption negatives: on MNIST they took caption accuracy from chance (14%) to 40% after
# ~300 steps (docs/text-to-image-gan.md)
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "captiongan": {"model": {**gan.PRESETS["cdcgan"]["model"]}, "train": {**gan.PRESETS["cdcgan"]["train"]},
                   "text": {"mismatch": 1.0},
                   "gan": {k: v for k, v in gan.PRESETS["cdcgan"]["gan"].items() if k != "conditional"}},
}
PRESETS["captiongan-diverse"] = {**PRESETS["captiongan"], "model": {**gan.PRESETS["cdcgan-diverse"]["model"]},
                                 "gan": {**PRESETS["captiongan"]["gan"], "mode_seeking": 1.0}}


class CaptionGANTask(gan.GANTask):
    """A GANTask over (image, caption ids) pairs; the monitor asks for classes through one caption each."""

    def __init__(self, g, d, g_ema, data: image_data.ImageSet, captions: np.ndarray, vocab: CaptionVocab,
                 test, scorer, cfg: dict[str, Any], runtime: Runtime, run: RunDir):
        super().__init__(g, d, g_ema, data, test, scorer, cfg, runtime, run)
        self.vocab, self.drop, self.mismatch = vocab, cfg["text"].drop_caption, cfg["text"].mismatch
        self.labels = self.stat_conditions = torch.as_tensor(captions).to(runtime.device)  # (N, T) word ids
        # class k is asked for by the caption of its first training image; a class with none (the shapes set's
        # held-out combinations) has no caption to ask for it by, and the monitor scores unconditionally
        every = data.labels is not None and np.bincount(data.labels, minlength=data.num_classes).all()
        self.score_classes = data.num_classes if every else 0
        if self.score_classes:
            first = [int(np.flatnonzero(data.labels == k)[0]) for k in range(self.score_classes)]
            self.class_captions = self.labels[first]  # (K, T)

    def _drop(self, ids: torch.Tensor) -> torch.Tensor:
        keep = torch.rand(len(ids), generator=self.gen) >= self.drop  # (B,)
        return ids * keep[:, None].to(ids.device)  # dropped rows become the empty caption (PAD = 0)

    def _real(self):
        x, ids = super()._real()
        self._batch = (x, ids)  # for the mismatched pairs of this D phase
        return x, self._drop(ids)

    def _d_phase(self):
        loss, logs = super()._d_phase()
        if self.mismatch > 0:  # real images with the next image's caption are fakes too (text-GAN negatives)
            x, ids = self._batch
            wrong = d_fake_loss(self.gc.loss, self.trainer.module("d")(self._aug(x), ids.roll(1, 0)))
            loss = loss + self.mismatch * wrong
            logs["mismatch"] = wrong.item() / self.gc.n_critic
        return loss, logs

    def _fake_labels(self, n: int) -> torch.Tensor:
        return self._drop(super()._fake_labels(n))

    def _generate(self, n: int, *, seed: int, labels: np.ndarray | None) -> np.ndarray:
        ids = self.labels[torch.arange(n) % len(self.labels)] if labels is None \
            else self.class_captions[torch.as_tensor(labels)]
        return to_uint8(self.sampler.sample(n, torch.Generator().manual_seed(seed), ids))

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "family": FAMILY, "vocab": self.vocab.to_dict()}


def train(preset: str | None = None, overrides: dict | None = None, out: str | None = None,
          resume: bool = False, init_from: str | None = None, progress: bool = True) -> tuple[RunDir, Result]:
    """Train (or resume) a caption-conditioned GAN; returns the run directory and the result."""
    if init_from:
        raise NotImplementedError("--init-from is not supported for caption GANs; train from scratch or --resume")
    run = base.run_dir(out, FAMILY)
    cfg = base.resolve(sections(), PRESETS, preset, overrides or {}, run, resume)
    if cfg["gan"].conditional or cfg["model"].num_classes:
        raise ValueError("gan.conditional / model.num_classes: a captiongan run is conditioned on captions; "
                         "leave them at false / 0")

    def build(rt: Runtime) -> base.Build:
        mc: GANConfig = cfg["model"]
        data, test = gan.load_images(cfg)
        data = templates.captioned(data, cfg["train"].seed)  # its own captions, or from its labels
        vocab = CaptionVocab.build(data.captions)
        tc = cfg["text"] = config.update(cfg["text"], {"vocab_size": len(vocab)}, "text")
        captions = vocab.encode_batch(data.captions, tc.text_len, f"{data.source}: caption (text.text_len)")
        scorer = gan.feature_scorer(cfg, data, test, progress)
        g, d = build_models(mc, tc)
        g_ema = gan.ema_and_layout(cfg, g, d, lambda: make_generator(mc, tc))
        banner = (f"caption GAN ({mc.arch}, {cfg['gan'].loss} loss, {len(vocab)} words, {tc.n_layer}-layer "
                  f"encoder) {gan.sizes(g, d)} params, {len(data):,} captioned images "
                  f"{mc.image_size}x{mc.image_size}x{mc.channels} from {data.source}, device {rt.device}")
        task = CaptionGANTask(g, d, g_ema, data, captions, vocab, test, scorer, cfg, rt, run)
        return base.Build(task, banner, config={"preset": preset}, files={"caption_vocab.json": vocab.to_dict()})

    return run, base.launch(FAMILY, cfg, run, build, resume, progress)


# ----------------------------------------------------------------------------- inference


class CaptionGANPipeline:
    """A trained caption GAN: `generate(prompt, n, seed)` -> uint8 (n, H, W, C), base.TextToImagePipeline."""

    family = FAMILY

    def __init__(self, g: Generator, meta: dict[str, Any], runtime: Runtime):
        self.g, self.meta, self.rt = g, meta, runtime
        self.vocab = CaptionVocab.from_dict(meta.get("vocab"), "checkpoint metadata 'vocab'")
        self.image_size, self.channels = g.config.image_size, g.config.channels
        self.text_len: int = g.embed.wpe.num_embeddings

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", dtype: str = "fp32") -> CaptionGANPipeline:
        def make(meta):
            c = meta["config"]
            return make_generator(config.from_dict(GANConfig, c["model"], "model"),
                                  config.from_dict(CaptionEncoderConfig, c["text"], "text"))
        return cls(*gan.load_generator(path, FAMILY, make, device, dtype))

    def encode(self, prompt: str | list[str], n: int) -> tuple[torch.Tensor, list[str]]:
        """Word ids (n, text_len) of one caption for all n images, or of one caption per image; and warnings."""
        prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
        if len(prompts) != n:
            raise ValueError(f"prompt: {len(prompts)} captions for n={n} images (give one, or one per image)")
        ids, notes = torch.zeros(n, self.text_len, dtype=torch.long), []
        for i, text in enumerate(prompts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError("prompt: empty; describe the image, e.g. 'a handwritten seven'")
            known = [t for t in self.vocab.encode(text, self.text_len)[0] if t != UNK]
            if not known:
                notes.append(f"prompt {text[:60]!r}: no word this model knows; generating unconditional images")
            ids[i, :len(known)] = torch.tensor(known, dtype=torch.long)
        return ids, list(dict.fromkeys(notes))

    @torch.no_grad()
    def generate(self, prompt: str | list[str], n: int = 1, seed: int | None = None, guidance: float | None = None,
                 temperature: float | None = None, top_k: int | None = None,
                 return_warnings: bool = False) -> np.ndarray | tuple[np.ndarray, list[str]]:
        """n images as uint8 (n, H, W, C); `temperature` scales the latent (1 = as trained); same seed, same images.
        The prompts' warnings are issued, or with return_warnings returned as (images, warnings)."""
        if guidance is not None:
            raise ValueError("guidance: a caption GAN has no guidance scale; leave it unset")
        if top_k is not None:
            raise ValueError("top_k: a caption GAN samples no tokens; leave it unset")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        ids, notes = self.encode(prompt, n)
        z = torch.randn(n, self.g.config.z_dim, generator=gan._generator(seed)) * (temperature or 1.0)
        images = gan.sample_in_chunks(self.g, self.rt, z, ids)
        if return_warnings:
            return images, notes
        for note in notes:
            warnings.warn(note, stacklevel=2)
        return images


def pipeline_from_checkpoint(path, device: str = "auto", dtype: str = "fp32") -> CaptionGANPipeline:
    return CaptionGANPipeline.from_checkpoint(path, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- CLI and server answers


def next_steps(run: Path) -> list[str]:
    return [f'genforge sample {run} --prompt "a handwritten seven" --n 16 --out grid.png', f"genforge eval {run}"]


def sample_command(pipe: CaptionGANPipeline, args: argparse.Namespace) -> int:
    """`genforge sample RUN --prompt P [--prompt Q ...]`: a grid with a row per prompt (PNG), or .npz images."""
    if getattr(args, "guidance", None) is not None:
        raise ValueError("--guidance: a caption GAN has no guidance scale")
    prompts = args.prompt if isinstance(args.prompt, list) else [args.prompt]
    n, out = args.n or 8, args.out or "samples.png"
    images = pipe.generate([p for p in prompts for _ in range(n)], n=n * len(prompts), seed=args.seed)
    if out.endswith(".npz"):
        np.savez_compressed(out, images=images, prompts=np.array([p for p in prompts for _ in range(n)]))
    else:
        to_pil(make_grid(images, n if len(prompts) > 1 else min(n, 8))).save(out)
    print(f"genforge: wrote {out}")
    return 0


def eval_command(args: argparse.Namespace) -> int:
    """`genforge eval RUN`: caption accuracy and image metrics (genforge/metrics/text2image.py), as JSON."""
    from ..metrics.text2image import evaluate_text2image
    pipe = pipeline_from_checkpoint(args.run, device=args.device)
    report = evaluate_text2image(pipe, n=args.n, seed=args.seed, data=args.data,
                                 feature_steps=getattr(args, "feature_steps", 0), where=str(args.run))
    print(json.dumps(report, indent=2))
    return 0


def model_info(pipe: CaptionGANPipeline) -> dict[str, Any]:
    return base.contract_info(pipe)
