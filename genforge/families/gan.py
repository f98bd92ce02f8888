"""The GAN family: train, sample and evaluate image GANs (MLP GAN, DCGAN, stabilised and conditional).

    genforge train gan --data ../shared/datasets/mnist --preset dcgan-hinge-sn
    genforge train gan --data faces.npz --preset dcgan --model.image_size=64 --gan.loss=hinge
    genforge sample RUN --n 64 --out grid.png [--label 7] [--interpolate]
    genforge eval RUN

`train()` resolves the config, loads the images, builds G and D and hands a `GANTask` to the shared
Trainer through `base.launch`: each step is n_critic discriminator phases, then one generator
phase; `after_step` keeps an EMA copy of G. For diversity (issue 14), `gan.mode_seeking` adds MSGAN's
term to G's phase (the batch's halves are pairs of latents for one condition) and
`model.minibatch_std` gives D a minibatch-std feature (`cdcgan-diverse` has both). The captiongan
family reuses the task and the set-up helpers below with captions as the conditions. Every evaluation writes a sample grid (PNG in
RUN/samples and TensorBoard) and, with a labelled data set, scores samples on the frozen feature
classifier (class entropy for mode collapse, feature Fréchet distance), through the shared
`metrics.monitor_images.TrainingImageScorer`. `GANPipeline` rebuilds the generator from a
checkpoint alone; image helpers live in `genforge.images`; `sample_command`, `eval_command`,
`next_steps` and `model_info` answer the CLI and the server.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .. import checkpoint, config
from ..data import images as image_data
from ..data.images import ImageDataConfig
from ..images import make_grid, to_pil, to_uint8
from ..metrics.monitor_images import TrainingImageScorer
from ..models.gan import (GANConfig, Generator, d_loss, diff_augment, g_loss, gradient_penalty,
                          mode_seeking_loss, r1_penalty)
from ..models.gan import build as build_models
from ..run import RunDir
from ..runtime import Runtime, make_runtime
from ..trainer import Result, Trainer, TrainConfig
from . import base

FAMILY = "gan"
DESCRIPTION = "image GANs: MLP GAN, DCGAN, stabilised and class-conditional"
METRICS = {"feature_fd": "feature Fréchet distance"}


@dataclass
class GANTrainConfig:
    loss: Literal["minimax", "nonsaturating", "hinge", "wgan-gp"] = "nonsaturating"
    conditional: bool = False  # condition G and D on the data set's labels
    lr_g: float = 0.0  # generator learning rate; 0 = train.lr
    lr_d: float = 0.0  # discriminator learning rate; 0 = train.lr
    n_critic: int = 1  # D phases per G phase (WGAN-GP: 5)
    gp_weight: float = 10.0  # WGAN-GP penalty weight
    r1: float = 0.0  # R1 penalty weight on real images; 0 = off
    diffaugment: bool = False  # differentiable colour + translation augmentation of D's inputs
    ema: float = 0.0  # EMA decay of G's weights (e.g. 0.999); 0 = off. Sampling uses the EMA copy
    mode_seeking: float = 0.0  # weight of MSGAN's mode-seeking term in G's loss (diversity); 0 = off
    monitor_samples: int = 1000  # samples scored at each evaluation (labelled data); 0 = off
    feature_steps: int = 0  # training steps of the feature classifier; 0 = automatic (2 epochs)
    channels_last: bool = True  # NHWC convolutions (faster on CPUs)

    def validate(self):
        if self.n_critic < 1 or self.monitor_samples < 0 or self.feature_steps < 0:
            raise ValueError("gan.n_critic must be >= 1, gan.monitor_samples and gan.feature_steps >= 0")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"gan.ema must be in [0, 1), got {self.ema}")
        if min(self.lr_g, self.lr_d, self.gp_weight, self.r1, self.mode_seeking) < 0:
            raise ValueError("gan.lr_g, gan.lr_d, gan.gp_weight, gan.r1 and gan.mode_seeking must be >= 0")


def sections() -> dict[str, Any]:
    return {"model": GANConfig(), "data": ImageDataConfig(), "gan": GANTrainConfig(),
            "train": TrainConfig(max_iters=5000, batch_size=64, lr=2e-4, min_lr=2e-4, warmup_iters=0,
                                 schedule="constant", beta1=0.5, beta2=0.999, weight_decay=0.0,
                                 grad_clip=0.0, eval_interval=500, log_interval=50)}


# The articles' systems are `mlp` and `dcgan`. The stabilised presets keep article 003's layout at
# a CPU-friendly width (G 32 channels, D 24/48/96/192: about 8x fewer FLOPs) and bf16 autocast.
CPU_WIDTH = {"g_width": 32, "d_width": 24}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # article 000: z 100 -> 256 -> 512 -> 784 tanh; D 512 -> 256 -> logit; the minimax objective
    "mlp": {"model": {"arch": "mlp", "image_size": 28, "channels": 1, "mlp_hidden": (256, 512), "leak": 0.2},
            "gan": {"loss": "minimax"}},
    # article 003: Linear 7*7*128 -> 2 transposed convs k5 s2 -> conv k7 tanh; D 64..512 LeakyReLU(0.01)
    "dcgan": {"model": {"arch": "dcgan", "g_width": 128, "d_width": 64, "leak": 0.01},
              "gan": {"loss": "nonsaturating"}},
    # stabilised: hinge loss, spectral norm in D, TTUR, EMA of G, LR decayed linearly to zero over
    # the run (max_iters, or max_seconds with --train.time_schedule=true); measured in BENCHMARKS.md
    "dcgan-hinge-sn": {"model": {"arch": "dcgan", **CPU_WIDTH, "leak": 0.1, "spectral_norm": True},
                       "gan": {"loss": "hinge", "ema": 0.9995, "lr_d": 4e-4, "lr_g": 2e-4},
                       "train": {"beta1": 0.0, "beta2": 0.9, "schedule": "linear", "min_lr": 0.0}},
    "dcgan-wgangp": {"model": {"arch": "dcgan", **CPU_WIDTH, "leak": 0.2},
                     "gan": {"loss": "wgan-gp", "n_critic": 5, "ema": 0.999},
                     "train": {"lr": 1e-4, "min_lr": 1e-4, "beta1": 0.0, "beta2": 0.9}},
    "cdcgan": {"model": {"arch": "dcgan", **CPU_WIDTH, "leak": 0.1, "spectral_norm": True},
               "gan": {"loss": "hinge", "conditional": True, "ema": 0.9995, "lr_d": 4e-4, "lr_g": 2e-4},
               "train": {"beta1": 0.0, "beta2": 0.9, "schedule": "linear", "min_lr": 0.0}},
}
# cdcgan with the diversity options of issue 14: MSGAN's mode-seeking term and minibatch std in D
PRESETS["cdcgan-diverse"] = {"model": {**PRESETS["cdcgan"]["model"], "minibatch_std": True},
                             "gan": {**PRESETS["cdcgan"]["gan"], "mode_seeking": 1.0}, "train": {**PRESETS["cdcgan"]["train"]}}


# ----------------------------------------------------------------------------- task


def _requires_grad(module: torch.nn.Module, on: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(on)


class GANTask(base.IntervalLosses):
    """G and D on (image, condition) pairs: the condition is a class here, a caption in the captiongan family.

    A subclass sets `labels` (one condition row per image), `score_classes` (classes the monitor
    asks for through `_generate(labels=class ids)`), `stat_conditions` (what the EMA generator's
    BatchNorm statistics are estimated over) and `meta`.
    """
    item_name = "img"

    def __init__(self, g: Generator, d, g_ema: Generator | None, data: image_data.ImageSet,
                 test: image_data.ImageSet | None, scorer, cfg: dict[str, Any], runtime: Runtime, run: RunDir):
        self.g, self.d, self.g_ema, self.cfg, self.rt, self.run = g, d, g_ema, cfg, runtime, run
        self.gc: GANTrainConfig = cfg["gan"]
        tc: TrainConfig = cfg["train"]
        self.batch = tc.batch_size
        self.images = torch.as_tensor(data.images).permute(0, 3, 1, 2).contiguous().to(runtime.device)  # (N, C, H, W) uint8
        self.labels = None if data.labels is None else torch.as_tensor(data.labels).to(runtime.device)
        self.conditional = g.embed is not None
        self.score_classes, self.stat_conditions = g.config.num_classes, None
        self.modules = {"g": g, "d": d, **({"g_ema": g_ema} if g_ema is not None else {})}
        betas = (tc.beta1, tc.beta2)
        self.optimizers = {
            "d": torch.optim.AdamW(d.parameters(), lr=self.gc.lr_d or tc.lr, betas=betas, weight_decay=tc.weight_decay),
            "g": torch.optim.AdamW(g.parameters(), lr=self.gc.lr_g or tc.lr, betas=betas, weight_decay=tc.weight_decay)}
        self.items_per_step = tc.batch_size * self.gc.n_critic * tc.grad_accum
        self.scorer, self.test = scorer, test
        self.select_metric = "feature_fd" if scorer is not None and test is not None else None
        self._stats_fresh = False  # the EMA generator's BatchNorm statistics are its own (standing_stats)
        self._shared_scorer: TrainingImageScorer | None = None  # built on first evaluation
        self._recent: dict[str, list[float]] = {}
        self.class_names = list(data.class_names)

    def bind(self, trainer: Trainer) -> None:
        self.trainer, self.gen = trainer, trainer.generator  # every draw of a step: one seeded stream
        self.order = base.EpochOrder(len(self.images), self.gen, drop_last=True, shares=trainer.shares)

    # one batch of real images in [-1, 1], in a seeded epoch order
    def _real(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.order.next(self.batch).to(self.rt.device)
        x = self.images[idx].float().div_(127.5).sub_(1.0)
        if self.gc.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, (self.labels[idx] if self.conditional else None)

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.g.config.z_dim, generator=self.gen).to(self.rt.device)

    def _fake_labels(self, n: int) -> torch.Tensor | None:
        if not self.conditional:
            return None
        return self.labels[torch.randint(0, len(self.labels), (n,), generator=self.gen).to(self.rt.device)]

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.gen) if self.gc.diffaugment else x

    def _log(self, logs: dict[str, float]) -> dict[str, float]:
        for k, v in logs.items():
            self._recent.setdefault(k, []).append(v)
        return logs

    def _d_phase(self):
        g, d = self.trainer.module("g"), self.trainer.module("d")
        real, labels = self._real()
        with torch.no_grad():
            fake = g(self._noise(len(real)), labels)
        real_logit, fake_logit = d(self._aug(real), labels), d(self._aug(fake), labels)
        loss = d_loss(self.gc.loss, real_logit, fake_logit)
        logs = {"d_loss": loss.item(), "d_real": real_logit.mean().item(), "d_fake": fake_logit.mean().item()}
        # the penalties differentiate twice, which compiled graphs do not: they call D itself
        if self.gc.loss == "wgan-gp":
            alpha = torch.rand(len(real), generator=self.gen).to(real.device)
            gp = gradient_penalty(self.d, real, fake.float(), alpha, labels)
            loss = loss + self.gc.gp_weight * gp
            logs["gp"] = gp.item()
        if self.gc.r1 > 0:
            r1 = r1_penalty(self.d, real, labels)
            loss = loss + 0.5 * self.gc.r1 * r1
            logs["r1"] = r1.item()
        return loss, {k: v / self.gc.n_critic for k, v in self._log(logs).items()}

    def _g_phase(self):
        _requires_grad(self.d, False)  # the graph built now holds no D weight gradients
        try:
            if self.gc.mode_seeking > 0:  # two latents per condition: the batch's halves are pairs
                labels = self._fake_labels(self.batch // 2)
                labels = None if labels is None else torch.cat([labels, labels])
                z = self._noise(len(labels) if labels is not None else self.batch // 2 * 2)
            else:
                labels, z = self._fake_labels(self.batch), self._noise(self.batch)
            fake = self.trainer.module("g")(z, labels)
            loss = g_loss(self.gc.loss, self.trainer.module("d")(self._aug(fake), labels))
            logs = {"g_loss": loss.item()}
            if self.gc.mode_seeking > 0:
                ms = mode_seeking_loss(*fake.float().chunk(2), *z.chunk(2))
                loss = loss + self.gc.mode_seeking * ms
                logs["mode_seeking"] = ms.item()
        finally:
            _requires_grad(self.d, True)
        return loss, self._log(logs)

    def phases(self, step):
        return [(("d",), self._d_phase)] * self.gc.n_critic + [(("g",), self._g_phase)]

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        self._stats_fresh = False
        if self.g_ema is None:
            return
        decay = min(self.gc.ema, (1 + step) / (10 + step))  # short runs: the average warms up
        ema_p, p = list(self.g_ema.parameters()), list(self.g.parameters())
        torch._foreach_lerp_(ema_p, p, 1.0 - decay)
        for b_ema, b in zip(self.g_ema.buffers(), self.g.buffers()):
            b_ema.copy_(b)

    def standing_stats(self) -> None:
        """Before scoring and checkpoints: the EMA generator's BatchNorm statistics, re-estimated.

        The EMA copy averages G's weights but holds G's running statistics (copied each step),
        which belong to other weights. after_step copies G's again, so training and resume are
        unchanged by this.
        """
        if self.g_ema is not None:
            with self.rt.autocast():
                self.g_ema.standing_stats(conditions=self.stat_conditions)
        self._stats_fresh = True

    def before_save(self) -> None:
        """A checkpoint written without an evaluation since the last step (Ctrl-C) gets them too."""
        if not self._stats_fresh:
            self.standing_stats()

    @property
    def sampler(self) -> Generator:
        return self.g_ema if self.g_ema is not None else self.g

    def _generate(self, n: int, *, seed: int, labels: np.ndarray | None) -> np.ndarray:
        """The sampler's n images from a fresh generator seeded `seed`, as uint8 (n, H, W, C)."""
        y = None if labels is None else torch.as_tensor(labels).to(self.rt.device)
        return to_uint8(self.sampler.sample(n, torch.Generator().manual_seed(seed), y))

    def _image_scorer(self) -> TrainingImageScorer:
        """The shared evaluate-while-training scorer, built once (it caches the test images' features)."""
        if self._shared_scorer is None:
            self._shared_scorer = TrainingImageScorer(self._generate, self.scorer, self.test, self.score_classes,
                                                      self.gc.monitor_samples, self.cfg["train"].seed)
        return self._shared_scorer

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        out = {f"train_{k}": float(np.mean(v)) for k, v in self._recent.items() if k.endswith("loss")}
        self._recent = {}
        self.standing_stats()  # before scoring and the checkpoints that follow
        return {**out, **self._image_scorer().scores()}

    def on_eval(self, step, monitor):
        if not self.cfg["train"].samples or not self.rt.is_main:
            return
        self._image_scorer().write_grid(step, monitor, self.run.file("samples"))

    def meta(self) -> dict[str, Any]:
        return {"family": FAMILY, "config": config.to_dict(self.cfg), "class_names": self.class_names,
                "feature_net": None if self.scorer is None else self.scorer.id}

    def rng_state(self):
        return self.order.state()

    def set_rng_state(self, state):
        self.order.set_state(state)


# ----------------------------------------------------------------------------- training


def load_images(cfg: dict[str, Any]) -> tuple[image_data.ImageSet, image_data.ImageSet | None]:
    """The training images, and the test images when a labelled set is monitored."""
    mc, dc, gc, tc = cfg["model"], cfg["data"], cfg["gan"], cfg["train"]
    data = dc.read("train", mc.image_size, mc.channels, tc.seed)
    test = dc.read("test", mc.image_size, mc.channels, tc.seed) if gc.monitor_samples and data.labels is not None else None
    return data, test


def feature_scorer(cfg: dict[str, Any], data: image_data.ImageSet, test, progress: bool):
    """The frozen feature network that scores samples (labelled data, monitoring on), or None."""
    if not cfg["gan"].monitor_samples or data.labels is None:
        return None
    from ..metrics import feature_net
    scorer = feature_net.get(data, test, steps=cfg["gan"].feature_steps, seed=0, verbose=progress)
    torch.manual_seed(cfg["train"].seed)  # the feature network's training must not shift the models' init
    return scorer


def ema_and_layout(cfg: dict[str, Any], g: Generator, d, make_g) -> Generator | None:
    """G's EMA copy (a fresh `make_g()` holding G's weights) if gan.ema > 0; NHWC convolutions if asked."""
    g_ema = None
    if cfg["gan"].ema > 0:
        g_ema = make_g()
        g_ema.load_state_dict(g.state_dict())
        g_ema.requires_grad_(False)
    if cfg["gan"].channels_last and cfg["model"].arch == "dcgan":
        for m in (g, d, g_ema):
            if m is not None:
                m.to(memory_format=torch.channels_last)
    return g_ema


def sizes(g, d) -> str:
    return f"G {sum(p.numel() for p in g.parameters()) / 1e6:.2f}M / D {sum(p.numel() for p in d.parameters()) / 1e6:.2f}M"


def train(preset: str | None = None, overrides: dict | None = None, out: str | None = None,
          resume: bool = False, init_from: str | None = None, progress: bool = True) -> tuple[RunDir, Result]:
    """Train (or resume) a GAN; returns the run directory and the result."""
    if init_from:
        raise NotImplementedError("--init-from is not supported for GANs yet; train from scratch or --resume")
    run = base.run_dir(out, FAMILY)
    cfg = base.resolve(sections(), PRESETS, preset, overrides or {}, run, resume)

    def build(rt: Runtime) -> base.Build:
        mc: GANConfig = cfg["model"]
        gc: GANTrainConfig = cfg["gan"]
        data, test = load_images(cfg)
        if gc.conditional:
            if data.labels is None:
                raise ValueError(f"gan.conditional=true but {data.source} has no labels (use an IDX label file, "
                                 "class sub-folders, or 'labels' in the .npz)")
            mc = cfg["model"] = config.update(mc, {"num_classes": data.num_classes}, "model")
        elif mc.num_classes:
            mc = cfg["model"] = config.update(mc, {"num_classes": 0}, "model")

        scorer = feature_scorer(cfg, data, test, progress)
        g, d = build_models(mc)
        g_ema = ema_and_layout(cfg, g, d, lambda: Generator(mc))
        cond = f", conditional on {mc.num_classes} classes" if mc.num_classes else ""
        banner = (f"GAN ({mc.arch}, {gc.loss} loss{cond}) {sizes(g, d)} params, "
                  f"{len(data):,} images {mc.image_size}x{mc.image_size}x{mc.channels} from {data.source}, "
                  f"device {rt.device}, {str(rt.dtype).removeprefix('torch.')}")
        return base.Build(GANTask(g, d, g_ema, data, test, scorer, cfg, rt, run), banner, config={"preset": preset})

    return run, base.launch(FAMILY, cfg, run, build, resume, progress)


# ----------------------------------------------------------------------------- inference


def load_generator(path, family: str, make, device: str, dtype: str) -> tuple[Generator, dict[str, Any], Runtime]:
    """A run's generator (its EMA copy if it has one), built by `make(meta)`, in eval mode on `device`."""
    tensors, meta, _ = base.load_run(path, family)
    prefix = "module.g_ema." if any(k.startswith("module.g_ema.") for k in tensors) else "module.g."
    g = make(meta)
    checkpoint.load_module(g, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    rt = make_runtime(device, dtype)
    g.to(rt.device).eval()
    return g, meta, rt


def _generator(seed: int | None) -> torch.Generator:
    gen = torch.Generator()
    if seed is None:
        gen.seed()  # fresh entropy, without touching torch's global generator
    else:
        gen.manual_seed(seed)
    return gen


def sample_in_chunks(g: Generator, rt: Runtime, z: torch.Tensor, conditions: torch.Tensor | None,
                     chunk: int = 500) -> np.ndarray:
    """G's images for latents z (n, z_dim) and conditions (n, ...) or None, as uint8 (n, H, W, C)."""
    out = []
    for i in range(0, len(z), chunk):
        c = None if conditions is None else conditions[i:i + chunk].to(rt.device)
        with rt.autocast():
            out.append(to_uint8(g.sample(len(z[i:i + chunk]), z=z[i:i + chunk].to(rt.device), labels=c)))
    return np.concatenate(out)


class GANPipeline:
    """A trained generator: `generate(n, seed, labels)` -> uint8 (n, H, W, C); grids and strips as PIL."""

    family = FAMILY

    def __init__(self, g: Generator, meta: dict[str, Any], runtime: Runtime):
        self.g, self.meta, self.rt = g, meta, runtime
        c = g.config
        self.image_size, self.channels, self.num_classes = c.image_size, c.channels, c.num_classes
        self.class_names: list[str] = list(meta.get("class_names") or []) if c.num_classes else []

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", dtype: str = "fp32") -> GANPipeline:
        make = lambda meta: Generator(config.from_dict(GANConfig, meta["config"]["model"], "model"))  # noqa: E731
        return cls(*load_generator(path, FAMILY, make, device, dtype))

    def _labels(self, n: int, labels) -> torch.Tensor | None:
        if not self.num_classes:
            if labels is not None:
                raise ValueError("this GAN is unconditional: it takes no labels")
            return None
        if labels is None:
            return torch.arange(n) % self.num_classes  # every class in turn
        t = torch.full((n,), labels) if isinstance(labels, int) else torch.as_tensor(list(labels), dtype=torch.long)
        if t.shape != (n,):
            raise ValueError(f"labels: expected one label per image ({n}), got {len(t)}")
        if t.min() < 0 or t.max() >= self.num_classes:
            raise ValueError(f"labels must be in 0..{self.num_classes - 1}, got {t.min().item()}..{t.max().item()}")
        return t

    @torch.no_grad()
    def generate(self, n: int, seed: int | None = None, labels: list[int] | int | None = None,
                 z: torch.Tensor | None = None) -> np.ndarray:
        """n images as uint8 (n, H, W, C); same seed, same images."""
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        y = self._labels(n, labels)
        gen = _generator(seed)
        if z is None:
            z = torch.randn(n, self.g.config.z_dim, generator=gen)
        return sample_in_chunks(self.g, self.rt, z, y)

    def grid(self, n: int = 64, seed: int | None = None, labels=None, ncols: int = 8, scale: int = 1):
        """An image grid (PIL), article 000's 8x8 display; conditional without labels: a row per class."""
        if labels is None and self.num_classes:
            rows = min(self.num_classes, max(1, n // ncols))
            labels = [r for r in range(rows) for _ in range(ncols)]
            n = len(labels)
        return to_pil(make_grid(self.generate(n, seed, labels), ncols), scale)

    def interpolate(self, steps: int = 10, seed: int | None = None, label: int | None = None, rows: int = 1, scale: int = 1):
        """Latent interpolation strips (PIL): `rows` pairs of seeded latents, `steps` points between each."""
        if steps < 2:
            raise ValueError(f"interpolation needs at least 2 steps, got {steps}")
        gen = _generator(seed)
        ends = torch.randn(rows, 2, self.g.config.z_dim, generator=gen)
        t = torch.linspace(0, 1, steps)[None, :, None]
        z = (ends[:, :1] * (1 - t) + ends[:, 1:] * t).reshape(rows * steps, -1)  # (rows*steps, z)
        labels = None
        if self.num_classes:
            labels = label if label is not None else [r % self.num_classes for r in range(rows) for _ in range(steps)]
        return to_pil(make_grid(self.generate(rows * steps, labels=labels, z=z), steps), scale)


def pipeline_from_checkpoint(path, device: str = "auto", dtype: str = "fp32") -> GANPipeline:
    return GANPipeline.from_checkpoint(path, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- CLI and server answers


def next_steps(run: Path) -> list[str]:
    return [f"genforge sample {run} --n 64 --out grid.png", f"genforge eval {run}"]


def sample_command(pipe: GANPipeline, args: argparse.Namespace) -> int:
    """`genforge sample RUN`: an 8x8 grid (or interpolation strips) as PNG, or the raw images as .npz."""
    out = args.out or "samples.png"
    if args.label is not None:
        try:
            args.label = int(args.label)
        except ValueError:
            raise ValueError(f"--label {args.label!r}: a GAN's label is a class index (an integer)") from None
    grid = not (out.endswith(".npz") or args.interpolate)
    args.n = args.n or (8 * min(pipe.num_classes, 20) if grid and pipe.num_classes and args.label is None else 64)
    if out.endswith(".npz"):
        np.savez_compressed(out, images=pipe.generate(args.n, seed=args.seed, labels=args.label))
    elif args.interpolate:
        pipe.interpolate(steps=10, seed=args.seed, label=args.label, rows=max(1, args.n // 10)).save(out)
    else:
        pipe.grid(args.n, seed=args.seed, labels=args.label).save(out)
    print(f"genforge: wrote {out}")
    return 0


def eval_command(args: argparse.Namespace) -> int:
    """`genforge eval RUN`: the image-metric protocol on the run's generator, as JSON."""
    from ..metrics import protocol
    report = protocol.evaluate_run(args.run, n=args.n, data=args.data, seed=args.seed, device=args.device,
                                   inception=args.inception, feature_steps=args.feature_steps)
    print(json.dumps(report, indent=2))
    return 0


def model_info(pipe: GANPipeline) -> dict[str, Any]:
    return base.image_info(pipe)
