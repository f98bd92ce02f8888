"""The VQ-VAE family: train and evaluate the discrete image tokenizer of text-to-image (stage 1).

    genforge train vqvae --data ../shared/datasets/mnist                  # conv, 28x28 -> 7x7 codes
    genforge train vqvae --data faces.npz --model.image_size=32 --model.quantizer=fsq
    genforge train vqvae --data ../shared/datasets/mnist --preset ae002   # article 002's autoencoder
    genforge sample RUN --out recon.png [--n 32 --seed 0]                 # real | reconstruction pairs
    genforge eval RUN [--data PATH]                                       # MSE, feature-FD, code usage

`train()` resolves the config, loads the images and hands a `VQVAETask` to the shared Trainer
through `base.launch`: one phase per step (reconstruction + commitment loss; the codebook moves by
its EMA inside the forward pass). Every evaluation reconstructs `vq.monitor_images` test images and
logs val_mse (the selection metric), the codebook's perplexity, the share of codes used and the
codes re-seeded so far, and writes a grid of (real | reconstruction) pairs to RUN/samples and
TensorBoard. With `vq.print_epochs` (preset ae002) it also prints article 002's
"Epoch [x/y], Loss: ..." line after each epoch.

`VQVAEPipeline` (what `genforge.load` returns; `base.ImageTokenizerPipeline`) turns uint8 images
into int64 codes and back; `load_tokenizer(RUN)` gives the frozen module itself, for a
text-to-image prior to train on and to copy into its own checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoint, config
from ..data import images as image_data
from ..data.images import ImageDataConfig
from ..images import make_grid, to_pil, to_uint8
from ..metrics.feature_net import to_input
from ..models.vqvae import VQVAE, VQVAEConfig
from ..run import RunDir
from ..runtime import Runtime, make_runtime
from ..trainer import Result, TrainConfig
from . import base

FAMILY = "vqvae"
DESCRIPTION = "VQ-VAE image tokenizers (conv or article 002's MLP autoencoder; EMA codebook or FSQ)"
METRICS = {"val_mse": "test reconstruction MSE (pixels in [-1, 1])"}


@dataclass
class VQTrainConfig:
    monitor_images: int = 1000  # test images reconstructed at each evaluation
    grid_pairs: int = 32  # (real | reconstruction) pairs in each evaluation's grid
    print_epochs: bool = False  # print "Epoch [x/y], Loss: ..." after each epoch (article 002)

    def validate(self):
        if self.monitor_images < 1 or self.grid_pairs < 1:
            raise ValueError("vq.monitor_images and vq.grid_pairs must be >= 1")


def sections() -> dict[str, Any]:
    return {"model": VQVAEConfig(), "data": ImageDataConfig(), "vq": VQTrainConfig(),
            "train": TrainConfig(max_iters=3000, batch_size=64, lr=2e-3, min_lr=1e-4, warmup_iters=50,
                                 weight_decay=0.0, grad_clip=1.0, eval_interval=500, log_interval=50)}


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # 28x28 grey -> 7x7 codes (any multiple of 4 via model.image_size), 512 EMA codes of 16 dimensions
    "conv": {},
    "conv-rgb32": {"model": {"image_size": 32, "channels": 3}},  # e.g. the shapes set: 8x8 codes
    "conv-fsq": {"model": {"quantizer": "fsq", "fsq_levels": (8, 5, 5, 5)}},  # 1000 codes, no codebook
    # article 002: Linear encoder -> LeakyReLU(0.2) -> Dropout(0.3) -> z -> mirrored decoder, BCE;
    # z (16 x 16 dimensions) is quantised as 16 codes
    "ae002": {"model": {"arch": "mlp", "width": 512, "groups": 16, "leak": 0.2, "dropout": 0.3, "loss": "bce"},
              "vq": {"print_epochs": True}, "train": {"lr": 1e-3}},
}


def usage(codes: np.ndarray | torch.Tensor, k: int) -> dict[str, float]:
    """Codebook usage of a set of codes: perplexity exp(H(p)), share of the K codes used, codes never used."""
    counts = np.bincount(np.asarray(codes).reshape(-1), minlength=k)
    p = counts[counts > 0] / counts.sum()
    used = int((counts > 0).sum())
    return {"perplexity": float(np.exp(-(p * np.log(p)).sum())), "codes_used": used / k, "dead_codes": float(k - used)}


def pairs(real: np.ndarray, recon: np.ndarray, per_row: int = 8) -> np.ndarray:
    """uint8 (N, H, W, C) real and reconstructed -> one grid image, each real image left of its reconstruction."""
    both = np.stack([real, recon], 1).reshape(-1, *real.shape[1:])  # (2N, H, W, C): real0, recon0, real1, ...
    return make_grid(both, 2 * per_row)


# ----------------------------------------------------------------------------- task


class VQVAETask(base.IntervalLosses):
    item_name = "img"
    select_metric = "val_mse"

    def __init__(self, model: VQVAE, data: image_data.ImageSet, test: image_data.ImageSet,
                 cfg: dict[str, Any], runtime: Runtime, run: RunDir):
        self.model, self.cfg, self.rt, self.run = model, cfg, runtime, run
        tc: TrainConfig = cfg["train"]
        self.vc: VQTrainConfig = cfg["vq"]
        self.batch = tc.batch_size
        self.images = torch.as_tensor(data.images).permute(0, 3, 1, 2).contiguous().to(runtime.device)  # (N, C, H, W)
        self.test = test.images[:self.vc.monitor_images]
        self.class_names = list(data.class_names)
        self.modules = {"vqvae": model}
        self.optimizers = {"vqvae": torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=(tc.beta1, tc.beta2),
                                                      weight_decay=tc.weight_decay)}
        self.items_per_step = tc.batch_size * tc.grad_accum
        self.steps_per_epoch = max(1, len(data) // (tc.batch_size * tc.grad_accum))
        self._recent: list[float] = []  # losses since the last evaluation
        self._epoch: list[float] = []  # losses since the last epoch's line (vq.print_epochs)

    def bind(self, trainer) -> None:
        self.trainer = trainer
        self.order = base.EpochOrder(len(self.images), trainer.generator, drop_last=True, shares=trainer.shares)

    def _loss(self):
        x = self.images[self.order.next(self.batch).to(self.rt.device)].float().div_(127.5).sub_(1.0)
        _, out = self.trainer.module("vqvae")(x)
        self._recent.append(out["loss"].item())
        self._epoch.append(out["loss"].item())
        logs = {"loss": out["loss"].item(), "recon": out["recon"].item(), "commit": out["commit"].item(),
                "perplexity": usage(out["codes"].cpu(), self.model.codebook_size)["perplexity"]}
        return out["loss"], logs

    def phases(self, step):
        return [(("vqvae",), self._loss)]

    def after_step(self, step: int) -> None:
        if (step + 1) % self.steps_per_epoch:
            return
        if self.vc.print_epochs and self._epoch:
            epochs = math.ceil(self.cfg["train"].max_iters / self.steps_per_epoch)
            self.trainer.monitor.write(f"Epoch [{(step + 1) // self.steps_per_epoch}/{epochs}], "
                                       f"Loss: {sum(self._epoch) / len(self._epoch):.4f}")
        self._epoch.clear()

    @torch.no_grad()
    def reconstruct(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, H, W, C) -> (reconstructions uint8 (N, H, W, C), codes (N, L)), in eval mode."""
        was = self.model.training
        self.model.eval()
        try:
            return reconstruct(self.model, images, self.rt.device)
        finally:
            self.model.train(was)

    def evaluate(self) -> dict[str, float]:
        recon, codes = self.reconstruct(self.test)
        mse = float(np.mean(((recon.astype(np.float32) - self.test) / 127.5) ** 2))
        q = self.model.quantizer
        restarts = float(q.restarts) if hasattr(q, "restarts") else 0.0
        return {**base.train_loss(self._recent), "val_mse": mse, **usage(codes, self.model.codebook_size),
                "codes_restarted": restarts}

    def on_eval(self, step, monitor):
        if not self.cfg["train"].samples or not self.rt.is_main:
            return
        real = self.test[:self.vc.grid_pairs]
        grid = pairs(real, self.reconstruct(real)[0])
        monitor.image("reconstructions", grid, step)
        to_pil(grid).save(self.run.file("samples") / f"step{step:06d}.png")

    def meta(self) -> dict[str, Any]:
        return {"family": FAMILY, "config": config.to_dict(self.cfg), "class_names": self.class_names}

    def rng_state(self):
        return self.order.state()

    def set_rng_state(self, state):
        self.order.set_state(state)


@torch.no_grad()
def reconstruct(model: VQVAE, images: np.ndarray, device, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, H, W, C) -> (decode(encode(images)) uint8 (N, H, W, C), codes int64 (N, L))."""
    recon, codes = [], []
    for i in range(0, len(images), batch):
        c = model.encode(to_input(images[i:i + batch]).to(device))
        codes.append(c.cpu().numpy())
        recon.append(to_uint8(model.decode(c)))
    return np.concatenate(recon), np.concatenate(codes)


# ----------------------------------------------------------------------------- training


def train(preset: str | None = None, overrides: dict | None = None, out: str | None = None,
          resume: bool = False, init_from: str | None = None, progress: bool = True) -> tuple[RunDir, Result]:
    """Train (or resume) a VQ-VAE; returns the run directory and the result."""
    if init_from:
        raise NotImplementedError("--init-from is not supported for VQ-VAEs; train from scratch or --resume")
    run = base.run_dir(out, FAMILY)
    cfg = base.resolve(sections(), PRESETS, preset, overrides or {}, run, resume)

    def build(rt: Runtime) -> base.Build:
        mc: VQVAEConfig = cfg["model"]
        dc: ImageDataConfig = cfg["data"]
        tc: TrainConfig = cfg["train"]
        data, test = (dc.read(split, mc.image_size, mc.channels, tc.seed) for split in ("train", "test"))
        model = VQVAE(mc)
        n = sum(p.numel() for p in model.parameters())
        banner = (f"VQ-VAE ({mc.arch}, {mc.quantizer}, {model.codebook_size} codes, {model.code_length} per image) "
                  f"{n / 1e6:.2f}M params, {len(data):,} images {mc.image_size}x{mc.image_size}x{mc.channels} "
                  f"from {data.source}, device {rt.device}, {str(rt.dtype).removeprefix('torch.')}")
        return base.Build(VQVAETask(model, data, test, cfg, rt, run), banner, config={"preset": preset})

    return run, base.launch(FAMILY, cfg, run, build, resume, progress)


# ----------------------------------------------------------------------------- inference


def load_tokenizer(path) -> tuple[VQVAE, dict[str, Any]]:
    """A VQ-VAE run's tokenizer: (the module, in eval mode, frozen, on the CPU; the checkpoint's meta)."""
    tensors, meta, ckpt = base.load_run(path, FAMILY, prefix="module.vqvae")
    model = VQVAE(config.from_dict(VQVAEConfig, meta["config"]["model"], "model"))
    checkpoint.load_module(model, tensors, ckpt)
    return model.eval().requires_grad_(False), meta


class VQVAEPipeline:
    """A trained tokenizer: `encode(images uint8 (N, H, W, C))` -> int64 (N, L); `decode(codes)` -> uint8 images."""

    family = FAMILY

    def __init__(self, model: VQVAE, meta: dict[str, Any], runtime: Runtime):
        self.model, self.meta, self.rt = model, meta, runtime
        c = model.config
        self.image_size, self.channels = c.image_size, c.channels
        self.codebook_size, self.code_length, self.grid = model.codebook_size, model.code_length, model.grid

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", dtype: str = "fp32") -> VQVAEPipeline:
        model, meta = load_tokenizer(path)
        rt = make_runtime(device, dtype)
        return cls(model.to(rt.device), meta, rt)

    def _check(self, images: np.ndarray) -> np.ndarray:
        want = (self.image_size, self.image_size, self.channels)
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want:
            got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"images: expected uint8 (N, {', '.join(map(str, want))}), got {got}")
        return images

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> int64 codes (N, code_length), row-major over the code grid."""
        return reconstruct(self.model, self._check(images), self.rt.device)[1]

    @torch.no_grad()
    def decode(self, codes) -> np.ndarray:
        """int codes (N, code_length) -> uint8 images (N, H, W, C)."""
        return to_uint8(self.model.decode(torch.as_tensor(np.asarray(codes), dtype=torch.long).to(self.rt.device)))

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return reconstruct(self.model, self._check(images), self.rt.device)[0]

    def test_images(self, data: str | None = None, where: str = "run"):
        """(train, test) splits of the run's data set (or `data`), at its size and channels."""
        from ..metrics import protocol
        src = protocol.run_data(self, data, where=where)
        return tuple(image_data.load(src.path, self.image_size, self.channels, split, src.test_fraction, src.seed,
                                     **src.fields) for split in ("train", "test"))

    def evaluate(self, data: str | None = None, n: int = 10000, seed: int = 0, feature_steps: int = 0,
                 where: str = "run") -> dict[str, Any]:
        """Reconstruct up to n test images: MSE, feature-FD (+ floor) and recognisability by the feature net, code usage;
        on the shapes set also the judge's accuracy on reconstructions of test and held-out-combination renders."""
        from ..metrics import feature_net, protocol
        train, test = self.test_images(data, where)
        test = protocol._subsample(test, n, seed)
        recon, codes = reconstruct(self.model, test.images, self.rt.device)
        report: dict[str, Any] = {"data": test.source, "n": len(test),
                                  "mse": float(np.mean(((recon.astype(np.float32) - test.images) / 127.5) ** 2)),
                                  **usage(codes, self.codebook_size), "codebook_size": self.codebook_size}
        net = feature_net.get(train, test, steps=feature_steps)
        scores = protocol.score(net, recon, test, train, requested=test.labels, n=n, seed=seed)
        keep = ("feature_net", "feature_fd", "feature_fd_floor", "kid", "precision", "recall",
                "label_accuracy", "label_accuracy_floor")
        report.update({k: scores[k] for k in keep if k in scores})
        if protocol.run_data(self, data, where=where).path == "shapes":  # what a prior over these codes can reach
            from ..metrics import judges, text2image
            report["judge_on_reconstructions"] = text2image.reconstruction_accuracy(
                self.reconstruct, judges.shapes_judge(self.image_size, self.channels), self.image_size, self.channels, n)
        return report


def pipeline_from_checkpoint(path, device: str = "auto", dtype: str = "fp32") -> VQVAEPipeline:
    return VQVAEPipeline.from_checkpoint(path, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- CLI and server answers


def next_steps(run: Path) -> list[str]:
    return [f"genforge sample {run} --out recon.png", f"genforge eval {run}",
            f"genforge train text2image --vqvae {run}"]


def sample_command(pipe: VQVAEPipeline, args: argparse.Namespace) -> int:
    """`genforge sample RUN`: n seeded test images beside their reconstructions, as PNG."""
    out = args.out or "recon.png"
    _, test = pipe.test_images(where=str(args.run))
    n = min(args.n or 32, len(test))
    pick = np.sort(np.random.default_rng(args.seed or 0).choice(len(test), n, replace=False))
    real = test.images[pick]
    to_pil(pairs(real, pipe.reconstruct(real))).save(out)
    print(f"genforge: wrote {out} ({n} test images, each left of its reconstruction)")
    return 0


def eval_command(args: argparse.Namespace) -> int:
    """`genforge eval RUN`: reconstruction metrics and codebook usage on the test split, as JSON."""
    from .. import inference
    pipe = inference.load(args.run, device=args.device)
    report = pipe.evaluate(data=args.data, n=args.n, seed=args.seed, feature_steps=args.feature_steps,
                           where=str(args.run))
    print(json.dumps({"run": str(args.run), **report}, indent=2))
    return 0


def model_info(pipe: VQVAEPipeline) -> dict[str, Any]:
    return base.tokenizer_info(pipe)
