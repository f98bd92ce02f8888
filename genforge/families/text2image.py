"""The text2image family: a transformer prior over [caption words ; image codes], DALL-E's route.

    genforge train vqvae --data mnist --out runs/vq                          # stage 1: the image tokenizer
    genforge train text2image --vqvae runs/vq --data mnist --out runs/t2i    # stage 2: this file
    genforge sample runs/t2i --prompt "a handwritten seven" --n 16 --out grid.png [--guidance 3 --seed 1]
    genforge eval runs/t2i

The prior is the GPT family's model (genforge/models/gpt.py) over one joint vocabulary:

    ids  0 .. W-1        caption words (CaptionVocab: PAD = 0, also the dropped caption; UNK = 1)
         W .. W+K-1      the K image codes of the frozen stage-1 VQ-VAE
         W+K             BOS, the start of every sequence
    seq  [BOS][caption, PAD-filled to text_len][L image codes]        (1 + text_len + L tokens)

It learns next-token prediction over the whole sequence; position t predicts token t + 1, so the
first text_len positions may only emit words and the last L only codes (`Layout.allowed`, a logits
mask in the loss and in sampling). Positions are rotary, 1-D over the whole sequence, or for the codes
their grid row and column (prior.positions=2d, the GPT's model.rope_grid; auto: 2d on shapes). The image
loss is weighted above the text loss (prior.image_weight : prior.text_weight). For classifier-free
guidance a fraction of the training captions is dropped (all PAD); sampling runs [conditional ;
unconditional] rows through `GPT.stream` together, and its row-group logits processor returns
uncond + g * (cond - uncond) (g = 1: plain conditional sampling, without the unconditional rows).
The codes are decoded by the stage-1 decoder, whose weights (module.vqvae.*) and config
(meta["vqvae"]) are copied into every checkpoint, so a run loads alone.
Training ends with `record_guidance`: a seeded sweep of (guidance scale, guidance_from) settings on
the training split (metrics/text2image.py guidance_sweep) whose chosen setting goes into the
checkpoints' metadata ("guidance") as the run's default (prior.tune_guidance=false: prior.guidance
and prior.guidance_from); `genforge eval RUN --retune` re-runs it on an existing run. The training and
test images' codes are cached by the tokenizer's sha256 and the images' bytes (`cached_codes`).
Tests: pytest tests/families/test_text2image.py
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .. import checkpoint, config
from ..data import images as image_data
from ..data.captions import PAD, CaptionVocab, caption_words
from ..data.text import cache_dir
from ..data.templates import captioned
from ..images import make_grid, to_pil, to_uint8
from ..config import check_guidance
from ..models.gpt import GPT, GPTConfig, check_sampling
from ..models.vqvae import VQVAE, VQVAEConfig
from ..run import RunDir, find_checkpoint
from ..runtime import Runtime, make_runtime
from ..trainer import Result, Trainer, TrainConfig
from . import base
from .gpt import param_groups

FAMILY = "text2image"
DESCRIPTION = "text-to-image: a transformer prior over caption words and VQ-VAE image codes"
METRICS = {"val_loss": "validation loss (weighted text + image)"}


@dataclass
class PriorConfig:
    vqvae: str = ""  # the stage-1 run (genforge train vqvae); its weights and config are copied into this run
    text_len: int = 0  # caption context in words; 0 = the longest training caption
    # rotary positions of the codes: 1d = raster order after the caption; 2d = their row and column
    # (model.rope_grid); auto = 2d on the shapes set (more faithful there: BENCHMARKS.md), 1d elsewhere
    positions: Literal["auto", "1d", "2d"] = "auto"
    image_weight: float = 7.0  # loss weight of the image positions ...
    text_weight: float = 1.0  # ... and of the text positions (weighted mean of the two)
    caption_dropout: float = 0.15  # share of training captions replaced by PAD (classifier-free guidance)
    guidance: float = 3.0  # guidance scale at sampling unless the run measured one; 1 = conditional, 0 = unconditional
    guidance_from: int = 0  # the first code position guided; earlier codes (e.g. 7 = MNIST's top row) sample at scale 1
    tune_guidance: bool = True  # after training: sweep SCALES on validation captions, keep the best as the default
    tune_images: int = 300  # validation images per scale in that sweep
    feature_steps: int = 0  # training steps of the judge's feature network (labelled sets), sweep and eval; 0 = auto
    temperature: float = 1.0  # default sampling temperature
    top_k: int | None = None  # default top-k at sampling; None = every code

    def validate(self):
        weights = (self.image_weight, self.text_weight)
        if self.text_len < 0 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("prior.text_len must be >= 0, prior.image_weight and prior.text_weight >= 0 (not both 0)")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"prior.caption_dropout must be in [0, 1), got {self.caption_dropout}")
        check_guidance(self.guidance, "prior.guidance")
        if self.guidance_from < 0:
            raise ValueError(f"prior.guidance_from must be >= 0, got {self.guidance_from}")
        if self.tune_images < 1 or self.feature_steps < 0:
            raise ValueError("prior.tune_images must be >= 1 and prior.feature_steps >= 0")
        check_sampling(1, self.temperature, self.top_k, None)


def sections() -> dict[str, Any]:
    return {"model": GPTConfig(n_layer=4, n_head=4, n_embd=128), "data": image_data.ImageDataConfig(),
            "prior": PriorConfig(),
            "train": TrainConfig(max_iters=3000, batch_size=64, lr=2e-3, min_lr=2e-4, warmup_iters=100,
                                 eval_interval=500, eval_iters=20)}


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "small": {},  # 4 layers x 128 wide: an MNIST prior in minutes on a CPU
    # wider and deeper, bf16 where native, Muon on the block matrices, LR decayed over a 30-minute budget
    "quality": {"model": {"n_layer": 6, "n_head": 6, "n_embd": 192, "dropout": 0.05, "attn_dropout": 0.0},
                "train": {"dtype": "auto", "optimizer": "muon", "schedule": "linear", "min_lr": 0.0,
                          "max_iters": 10**7, "max_seconds": 1800.0, "time_schedule": True}},
}


# ----------------------------------------------------------------------------- sequence layout


@dataclass(frozen=True)
class Layout:
    """Where words, codes and BOS sit in the joint vocabulary and in a sequence."""
    words: int  # W: caption-vocabulary size (PAD and UNK included)
    codes: int  # K: the tokenizer's codebook size
    text_len: int  # caption positions
    code_len: int  # L: codes per image

    @property
    def bos(self) -> int:
        return self.words + self.codes

    @property
    def vocab_size(self) -> int:
        return self.words + self.codes + 1

    @property
    def block_size(self) -> int:  # the training input (text_len + L) plus the last sampled code's position
        return 1 + self.text_len + self.code_len

    def sequences(self, captions: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """captions (B, text_len) word ids, codes (B, L) in 0..K-1 -> (B, 1 + text_len + L) joint ids."""
        bos = torch.full((len(captions), 1), self.bos, dtype=torch.long, device=captions.device)
        return torch.cat([bos, captions, codes + self.words], 1)

    def code_mask(self) -> torch.Tensor:
        """(V,) bool: the image codes."""
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        mask[self.words:self.bos] = True
        return mask

    def allowed(self) -> torch.Tensor:
        """(text_len + L, V) bool: what input position t may predict (a word for the first text_len, then a code)."""
        text = torch.zeros(self.vocab_size, dtype=torch.bool)
        text[:self.words] = True
        return torch.stack([text] * self.text_len + [self.code_mask()] * self.code_len)


def prior_loss(logits: torch.Tensor, targets: torch.Tensor, layout: Layout, pc: PriorConfig
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """logits (B, T, V) and targets (B, T), T = text_len + L -> the weighted loss and its text/image parts.
    Disallowed tokens are masked out before the softmax."""
    allowed = layout.allowed().to(logits.device)  # (T, V)
    logits = logits.float().masked_fill(~allowed, float("-inf"))
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(targets.shape)  # (B, T)
    text, image = ce[:, :layout.text_len].mean(), ce[:, layout.text_len:].mean()
    w_t, w_i = pc.text_weight if layout.text_len else 0.0, pc.image_weight
    return (w_t * text + w_i * image) / (w_t + w_i), {"text_loss": text, "image_loss": image}


@torch.no_grad()
def evaluate_prior(model: GPT, layout: Layout, pc: PriorConfig, captions: torch.Tensor, codes: torch.Tensor,
                   rt: Runtime, batch_size: int = 256, max_batches: int | None = None) -> dict[str, float]:
    """Mean val_loss / val_text_loss / val_image_loss over (captions, codes), in order, batch by batch."""
    was = model.training
    model.eval()
    sums, count = {"val_loss": 0.0, "val_text_loss": 0.0, "val_image_loss": 0.0}, 0
    for b, i in enumerate(range(0, len(codes), batch_size)):
        if max_batches and b >= max_batches:
            break
        seq = layout.sequences(captions[i:i + batch_size], codes[i:i + batch_size]).to(rt.device)
        with rt.autocast():
            logits, _ = model(seq[:, :-1])
        loss, parts = prior_loss(logits, seq[:, 1:], layout, pc)
        for k, v in (("val_loss", loss), ("val_text_loss", parts["text_loss"]),
                     ("val_image_loss", parts["image_loss"])):
            sums[k] += v.item() * len(seq)
        count += len(seq)
    model.train(was)
    return {k: v / max(count, 1) for k, v in sums.items()}

# ----------------------------------------------------------------------------- sampling


def guided(logits: torch.Tensor, scale: float, allowed: torch.Tensor) -> torch.Tensor:
    """logits (2B, V) of [conditional ; unconditional] rows -> (B, V): uncond + scale * (cond - uncond),
    with every token but the `allowed` ones at -inf."""
    cond, uncond = logits.float().chunk(2)  # (B, V) each
    return (uncond + scale * (cond - uncond)).masked_fill(~allowed, float("-inf"))


def sample_codes(prior: GPT, layout: Layout, captions: torch.Tensor, guidance: float, temperature: float,
                 top_k: int | None, generator: torch.Generator | None, guidance_from: int = 0) -> torch.Tensor:
    """captions (B, text_len) word ids -> sampled codes (B, L) in 0..K-1, one KV-cached pass of GPT.stream
    over [conditional ; unconditional] rows (only the conditional ones when guidance == 1); codes before
    position `guidance_from` sample at scale 1 (conditionally)."""
    rows = captions if guidance == 1 else torch.cat([captions, torch.full_like(captions, PAD)])  # (B or 2B, text_len)
    idx = torch.cat([torch.full((len(rows), 1), layout.bos, dtype=torch.long, device=rows.device), rows], 1)
    mask = layout.code_mask().to(rows.device)
    process = mask if guidance == 1 else (
        lambda logits, step: guided(logits, guidance if step >= guidance_from else 1.0, mask))
    steps = prior.stream(idx, layout.code_len, temperature=temperature, top_k=top_k, generator=generator,
                         logits_processor=process)
    return torch.stack(list(steps), 1) - layout.words  # (B, L)


def caption_sample(captions: list[str], k: int = 8) -> list[str]:
    """The first k distinct captions, for the sample grid written at every evaluation."""
    return list(dict.fromkeys(captions))[:k]


def resolve_data(path: str) -> str:
    """A data path, or a data-set name (mnist) in $GENFORGE_DATASETS or the genforge cache."""
    from ..metrics.protocol import resolve_dataset
    return resolve_dataset(path, what="data.path")


def image_codes(vqvae: VQVAE, images: np.ndarray, batch: int = 500) -> torch.Tensor:
    """uint8 (N, H, W, C) -> codes (N, L) on the CPU, in batches."""
    device = next(vqvae.parameters()).device
    out = []
    for i in range(0, len(images), batch):
        x = torch.as_tensor(images[i:i + batch]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # (B, C, H, W)
        out.append(vqvae.encode(x.to(device)).cpu())
    return torch.cat(out) if out else torch.zeros(0, vqvae.code_length, dtype=torch.long)


def cached_codes(vqvae: VQVAE, tokenizer_sha256: str, images: np.ndarray) -> torch.Tensor:
    """`image_codes`, cached under $GENFORGE_CACHE/codes by the tokenizer checkpoint's sha256 and the images' bytes."""
    key = hashlib.sha256(f"{tokenizer_sha256}|{images.shape}".encode())
    key.update(np.ascontiguousarray(images))
    path = cache_dir() / "codes" / f"{key.hexdigest()[:32]}.safetensors"
    if path.exists():
        return checkpoint.load(path)[0]["codes"]
    codes = image_codes(vqvae, images)
    checkpoint.save(path, {"codes": codes}, {"family": "image-codes", "tokenizer_sha256": tokenizer_sha256})
    return codes

# ----------------------------------------------------------------------------- task


class Text2ImageTask(base.IntervalLosses):
    item_name = "img"

    def __init__(self, prior: GPT, vqvae: VQVAE, layout: Layout, vocab: CaptionVocab,
                 train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor] | None,
                 sample_prompts: list[str], vq_meta: dict, cfg: dict[str, Any], runtime: Runtime, run: RunDir):
        self.prior, self.vqvae, self.layout, self.vocab = prior, vqvae, layout, vocab
        self.captions, self.codes = train  # (N, text_len), (N, L)
        self.val, self.sample_prompts, self.vq_meta = val, sample_prompts, vq_meta
        self.cfg, self.rt, self.run, self.pc = cfg, runtime, run, cfg["prior"]
        tc: TrainConfig = cfg["train"]
        self.modules = {"prior": prior, "vqvae": vqvae}  # the frozen tokenizer travels in every checkpoint
        self.optimizers = param_groups(prior, tc)
        self.items_per_step = tc.batch_size * tc.grad_accum
        self.select_metric = "val_loss" if val is not None else None
        self._recent: list[float] = []

    def bind(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.order = base.EpochOrder(len(self.codes), trainer.generator, drop_last=True, shares=trainer.shares)

    def _loss(self):
        idx = self.order.next(self.cfg["train"].batch_size)
        captions = self.captions[idx].clone()  # (B, text_len)
        drop = torch.rand(len(idx), generator=self.trainer.generator) < self.pc.caption_dropout
        captions[drop] = PAD  # the empty caption: what guidance's unconditional rows see
        seq = self.layout.sequences(captions, self.codes[idx]).to(self.rt.device)  # (B, 1 + text_len + L)
        logits, _ = self.trainer.module("prior")(seq[:, :-1])
        loss, parts = prior_loss(logits, seq[:, 1:], self.layout, self.pc)
        self._recent.append(loss.item())
        return loss, {"loss": self._recent[-1], **{k: v.item() for k, v in parts.items()}}

    def phases(self, step):
        return [(tuple(self.optimizers), self._loss)]

    def evaluate(self) -> dict[str, float]:
        out = base.train_loss(self._recent)
        if self.val is not None:
            tc = self.cfg["train"]
            out.update(evaluate_prior(self.prior, self.layout, self.pc, *self.val, self.rt, tc.batch_size,
                                      tc.eval_iters or None))
        return out

    def on_eval(self, step, monitor):
        if not self.cfg["train"].samples or not self.rt.is_main or not self.sample_prompts:
            return
        pipe = Text2ImagePipeline(self.prior, self.vqvae, self.vocab, self.meta(), self.rt)
        prompts = [p for p in self.sample_prompts for _ in range(8)]
        images, _ = pipe.generate(prompts, len(prompts), seed=step, return_warnings=True)
        grid = make_grid(images, 8)
        monitor.image("samples", grid, step)
        to_pil(grid).save(self.run.file("samples") / f"step{step:06d}.png")

    def meta(self) -> dict[str, Any]:
        return {"family": FAMILY, "config": config.to_dict(self.cfg), "caption_vocab": self.vocab.to_dict(),
                "vqvae": self.vq_meta}

    def rng_state(self):
        return self.order.state()

    def set_rng_state(self, state):
        self.order.set_state(state)


# ----------------------------------------------------------------------------- training


def load_stage1(path: str) -> tuple[VQVAE, dict[str, Any]]:
    """The frozen tokenizer of a vqvae run and what this run records of it (config, source, sha256)."""
    if not path:
        raise ValueError("no image tokenizer: pass --vqvae RUN (a `genforge train vqvae` run); sets prior.vqvae")
    from .vqvae import load_tokenizer
    vq, _ = load_tokenizer(path)
    digest = hashlib.sha256(find_checkpoint(path).read_bytes()).hexdigest()
    return vq, {"config": dataclasses.asdict(vq.config), "source": str(path), "sha256": digest}


def train(preset: str | None = None, overrides: dict | None = None, out: str | None = None,
          resume: bool = False, init_from: str | None = None, progress: bool = True) -> tuple[RunDir, Result]:
    """Train (or resume) a text-to-image prior; returns the run directory and the result."""
    if init_from:
        raise NotImplementedError("--init-from is not supported for text2image runs; train from scratch or --resume")
    run = base.run_dir(out, FAMILY)
    cfg = base.resolve(sections(), PRESETS, preset, overrides or {}, run, resume)
    if not cfg["data"].path:
        raise ValueError("no training data: pass --data (a labelled image set such as mnist, or a captions file)")

    def build(rt: Runtime) -> base.Build:
        dc: image_data.ImageDataConfig = cfg["data"]
        pc: PriorConfig = cfg["prior"]
        tc: TrainConfig = cfg["train"]
        vq, vq_meta = load_stage1(pc.vqvae)
        vc = vq.config
        path = resolve_data(dc.path)
        data, test = (captioned(dc.read(split, vc.image_size, vc.channels, tc.seed, path), tc.seed)
                      for split in ("train", "test"))
        vocab = CaptionVocab.from_dict(run.read_json("captions.json")) if resume else CaptionVocab.build(data.captions)
        text_len = pc.text_len or max(len(caption_words(c)) for c in data.captions)
        positions = "2d" if pc.positions == "2d" or (pc.positions == "auto" and path == "shapes") else "1d"
        pc = cfg["prior"] = dataclasses.replace(pc, text_len=text_len, positions=positions)
        if pc.tune_guidance and not (path == "shapes" or data.labels is not None):
            print(f"genforge: {data.source} has no labelled images to judge a guidance sweep on; the default "
                  f"guidance stays prior.guidance={pc.guidance:g}", file=sys.stderr)
            pc = cfg["prior"] = dataclasses.replace(pc, tune_guidance=False)
        layout = Layout(len(vocab), vq.codebook_size, text_len, vq.code_length)
        grid = tuple(vq.grid) if pc.positions == "2d" else None
        if cfg["model"].rope_grid not in (None, grid):
            raise ValueError(f"model.rope_grid={cfg['model'].rope_grid}: a text2image run sets it from prior.positions")
        cfg["model"] = dataclasses.replace(cfg["model"], vocab_size=layout.vocab_size, block_size=layout.block_size,
                                           rope_grid=grid)
        train_set = (torch.as_tensor(vocab.encode_batch(data.captions, text_len)),
                     cached_codes(vq, vq_meta["sha256"], data.images))
        val = None
        if len(test):  # a caption longer than the context is cut: the context is the training captions'
            cut = [" ".join(caption_words(c)[:text_len]) for c in test.captions]
            val = (torch.as_tensor(vocab.encode_batch(cut, text_len)), cached_codes(vq, vq_meta["sha256"], test.images))
        prior = GPT(cfg["model"])
        banner = (f"text2image prior with {prior.num_params() / 1e6:.2f}M parameters over {len(vocab)} words + "
                  f"{layout.codes} codes ({text_len} + {layout.code_len} positions), {len(data):,} captioned "
                  f"images from {data.source}, tokenizer {pc.vqvae}, device {rt.device}, "
                  f"{str(rt.dtype).removeprefix('torch.')}")
        task = Text2ImageTask(prior, vq, layout, vocab, train_set, val, caption_sample(test.captions or data.captions),
                              vq_meta, cfg, rt, run)
        return base.Build(task, banner, config={"preset": preset}, files={"captions.json": vocab.to_dict()})

    result = base.launch(FAMILY, cfg, run, build, resume, progress)
    if run.is_main and result.stopped != "interrupted":
        record_guidance(Text2ImagePipeline.from_checkpoint(run.path, device=cfg["train"].device), run.path)
    return run, result


def record_guidance(pipe: Text2ImagePipeline, run: str | Path, feature_steps: int = 0, sweep: bool | None = None
                    ) -> dict:
    """Set the run's default guidance (scale and guidance_from) and write it into its checkpoints' metadata
    ('guidance'): the setting a seeded sweep over prior.tune_images training-split captions chooses
    (metrics/text2image.py guidance_sweep), or with prior.tune_guidance=false (sweep=False) the configured
    prior.guidance and prior.guidance_from. `genforge eval RUN --retune` (sweep=True) re-runs it on any run."""
    if not (pipe.pc.tune_guidance if sweep is None else sweep):
        info = {"scale": pipe.pc.guidance, "guidance_from": pipe.pc.guidance_from, "method": "config"}
    else:
        from ..metrics.text2image import SCALES, guidance_sweep
        t0 = time.perf_counter()
        info = guidance_sweep(pipe, SCALES, pipe.pc.tune_images, feature_steps=feature_steps or pipe.pc.feature_steps,
                              where=str(run))
        swept = ", ".join(f"{r['scale']:g} from {r['guidance_from']}: {r['accuracy']:.1%} FD {r['fd']:.2f}"
                          for r in info["settings"])
        print(f"genforge: guidance sweep on {info['n']} training-split captions per setting ({info['judge']}; FD floor "
              f"{info['fd_floor']:.2f}; {time.perf_counter() - t0:.0f} s): {swept}; default guidance "
              f"{info['scale']:g} from code {info['guidance_from']} ({info['rule']}), saved in the checkpoints "
              "(--guidance / --guidance-from override it; --prior.tune_guidance=false skips the sweep)", file=sys.stderr)
    paths = [Path(run)] if Path(run).is_file() else [RunDir(run).checkpoint(w) for w in ("best", "last")]
    for path in filter(Path.exists, paths):
        tensors, meta = checkpoint.load(path)
        checkpoint.save(path, tensors, {**meta, "guidance": info})
    pipe.meta["guidance"], pipe.guidance, pipe.guidance_from = info, info["scale"], info["guidance_from"]
    return info


# ----------------------------------------------------------------------------- inference


class Text2ImagePipeline:
    """A trained prior and its tokenizer: `generate(prompt, n)` -> uint8 (n, H, W, C); `grid(prompts)` as PIL."""

    family = FAMILY

    def __init__(self, prior: GPT, vqvae: VQVAE, vocab: CaptionVocab, meta: dict[str, Any], runtime: Runtime):
        self.prior, self.vqvae, self.vocab, self.meta, self.rt = prior, vqvae, vocab, meta, runtime
        self.pc = config.from_dict(PriorConfig, meta["config"]["prior"], "prior")
        self.image_size, self.channels = vqvae.config.image_size, vqvae.config.channels
        self.text_len = self.pc.text_len
        self.guidance = float((meta.get("guidance") or {}).get("scale", self.pc.guidance))  # the run's default
        check_guidance(self.guidance, "checkpoint metadata guidance.scale")
        # the first guided code position: the run's measured one, else prior.guidance_from
        self.guidance_from = int((meta.get("guidance") or {}).get("guidance_from", self.pc.guidance_from))
        if self.guidance_from < 0:
            raise ValueError(f"checkpoint metadata guidance.guidance_from must be >= 0, got {self.guidance_from}")
        self.layout = Layout(len(vocab), vqvae.codebook_size, self.text_len, vqvae.code_length)

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", dtype: str = "fp32") -> Text2ImagePipeline:
        tensors, meta, ckpt = base.load_run(path, FAMILY)
        prior = GPT(config.from_dict(GPTConfig, meta["config"]["model"], "model"))
        vqvae = VQVAE(config.from_dict(VQVAEConfig, meta["vqvae"]["config"], "vqvae"))
        for name, module in (("prior", prior), ("vqvae", vqvae)):
            p = f"module.{name}."
            checkpoint.load_module(module, {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}, ckpt)
        rt = make_runtime(device, dtype)
        prior.to(rt.device).eval()
        vqvae.to(rt.device).eval()
        return cls(prior, vqvae, CaptionVocab.from_dict(meta["caption_vocab"], f"{ckpt}: caption_vocab"), meta, rt)

    def captions(self, prompts: list[str]) -> tuple[torch.Tensor, list[str]]:
        """Prompts -> word ids (N, text_len) and warnings. Unknown words are left out with a warning (so only
        known words count against the caption context); a prompt with no known word becomes the empty caption
        (unconditional images). No words at all, or more known words than text_len: a ValueError."""
        rows, notes = {}, []
        for text in dict.fromkeys(prompts):
            words = caption_words(text) if isinstance(text, str) else []
            if not words:
                raise ValueError(f"prompt: {text!r} has no words; describe the image, e.g. 'a handwritten seven'")
            unknown = [w for w in words if w not in self.vocab.index]
            known, _ = self.vocab.encode(" ".join(w for w in words if w in self.vocab.index), self.text_len)
            if not known:
                notes.append(f"prompt {text!r}: no word this model knows; the images are unconditional")
            elif unknown:
                notes.append(f"prompt {text!r}: unknown words left out: {', '.join(unknown)}")
            rows[text] = known + [PAD] * (self.text_len - len(known))
        return torch.tensor([rows[p] for p in prompts], dtype=torch.long).view(len(prompts), self.text_len), notes

    @torch.no_grad()
    def generate(self, prompt: str | list[str], n: int = 1, seed: int | None = None, guidance: float | None = None,
                 temperature: float | None = None, top_k: int | None = None, batch: int = 256,
                 return_warnings: bool = False, guidance_from: int | None = None
                 ) -> np.ndarray | tuple[np.ndarray, list[str]]:
        """n images as uint8 (n, H, W, C) for one prompt, or for a list of n prompts (one each); same seed,
        same images. guidance / temperature / top_k / guidance_from: None = the run's defaults. The prompts'
        warnings are issued (warnings.warn), or with return_warnings returned beside the images as (images, warnings)."""
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
        if len(prompts) != n:
            raise ValueError(f"prompt: {len(prompts)} prompts for n={n} images; give one prompt, or one per image")
        g = self.guidance if guidance is None else guidance
        check_guidance(g)
        first = self.guidance_from if guidance_from is None else guidance_from
        if first < 0:
            raise ValueError(f"guidance_from must be >= 0, got {first}")
        temperature = self.pc.temperature if temperature is None else temperature
        top_k = self.pc.top_k if top_k is None else top_k
        check_sampling(1, temperature, top_k, None)
        captions, notes = self.captions(prompts)
        captions = captions.to(self.rt.device)
        gen = torch.Generator(device=self.rt.device)
        gen.manual_seed(seed if seed is not None else torch.seed())
        out = []
        for i in range(0, n, batch):
            with self.rt.autocast():
                codes = sample_codes(self.prior, self.layout, captions[i:i + batch], g, temperature, top_k, gen, first)
            out.append(to_uint8(self.vqvae.decode(codes).float()))
        if return_warnings:
            return np.concatenate(out), notes
        for note in notes:
            warnings.warn(note, stacklevel=2)
        return np.concatenate(out)

    def grid(self, prompts: list[str], per_prompt: int = 8, seed: int | None = None, scale: int = 1, **kw):
        """A grid (PIL) with a row per prompt, `per_prompt` images each (one prompt: rows of 8)."""
        images = self.generate([p for p in prompts for _ in range(per_prompt)], len(prompts) * per_prompt, seed, **kw)
        return to_pil(make_grid(images, per_prompt if len(prompts) > 1 else min(per_prompt, 8)), scale)

    def evaluate(self, path: str | None = None) -> dict[str, float]:
        """The prior's validation losses on the test split of `path` (default: the run's data set), captioned
        as in training."""
        dc = config.from_dict(image_data.ImageDataConfig, self.meta["config"]["data"], "data")
        seed = config.from_dict(TrainConfig, self.meta["config"]["train"], "train").seed
        test = captioned(dc.read("test", self.image_size, self.channels, seed, resolve_data(path or dc.path)), seed)
        cut = [" ".join(caption_words(c)[:self.text_len]) for c in test.captions]
        captions = torch.as_tensor(self.vocab.encode_batch(cut, self.text_len))
        codes = cached_codes(self.vqvae, self.meta["vqvae"]["sha256"], test.images)
        return evaluate_prior(self.prior, self.layout, self.pc, captions, codes, self.rt)


def pipeline_from_checkpoint(path, device: str = "auto", dtype: str = "fp32") -> Text2ImagePipeline:
    return Text2ImagePipeline.from_checkpoint(path, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- CLI and server answers


def next_steps(run: Path) -> list[str]:
    return [f"genforge sample {run} --prompt \"...\" --n 16 --out grid.png", f"genforge eval {run}"]


def sample_command(pipe: Text2ImagePipeline, args: argparse.Namespace) -> int:
    """`genforge sample RUN --prompt P [--prompt Q ...]`: a grid with a row per prompt (PNG), or .npz images."""
    prompts = args.prompts or []
    if not prompts:
        raise ValueError("--prompt: a text-to-image run needs a prompt, e.g. --prompt \"a handwritten seven\"")
    out, n = args.out or "samples.png", args.n or (16 if len(prompts) == 1 else 8)
    if args.guidance_from is not None and args.guidance_from < 0:
        raise ValueError(f"--guidance-from must be >= 0, got {args.guidance_from}")
    kw = dict(seed=args.seed, guidance=args.guidance, temperature=args.temperature, top_k=args.top_k,
              guidance_from=args.guidance_from)
    if args.guidance is None:
        how = (pipe.meta.get("guidance") or {}).get("method") == "sweep" and "chosen on validation after training"
        print(f"genforge: guidance {pipe.guidance:g} from code {pipe.guidance_from} (the run's default"
              f"{', ' + how if how else ''}; --guidance / --guidance-from to change)", file=sys.stderr)
    if out.endswith(".npz"):
        images = pipe.generate([p for p in prompts for _ in range(n)], n * len(prompts), **kw)
        np.savez_compressed(out, images=images, prompts=np.array([p for p in prompts for _ in range(n)]))
    else:
        pipe.grid(prompts, n, **kw).save(out)
    print(f"genforge: wrote {out}")
    return 0


def eval_command(args: argparse.Namespace) -> int:
    """`genforge eval RUN [--retune] [--guidance G --guidance-from N]`: the prior's validation losses and the
    caption-faithfulness report, as JSON; "sampling" is the guidance it used."""
    pipe = Text2ImagePipeline.from_checkpoint(args.run, device=args.device)
    report: dict[str, Any] = {"prior": pipe.evaluate(args.data)}
    steps = args.feature_steps or pipe.pc.feature_steps
    retune = getattr(args, "retune", False)
    if retune or "guidance" not in pipe.meta:  # asked, or a run from before the sweep: measure its default now
        record_guidance(pipe, args.run, steps, sweep=True if retune else None)
    report["guidance"] = pipe.meta["guidance"]
    if getattr(args, "guidance", None) is not None:
        check_guidance(args.guidance, "--guidance")
        pipe.guidance = args.guidance
    if getattr(args, "guidance_from", None) is not None:
        if args.guidance_from < 0:
            raise ValueError(f"--guidance-from must be >= 0, got {args.guidance_from}")
        pipe.guidance_from = args.guidance_from
    report["sampling"] = {"guidance": pipe.guidance, "guidance_from": pipe.guidance_from}
    from ..metrics.text2image import evaluate_text2image
    report.update(evaluate_text2image(pipe, n=args.n, seed=args.seed, data=args.data, feature_steps=steps))
    print(json.dumps(report, indent=2))
    return 0


def model_info(pipe: Text2ImagePipeline) -> dict[str, Any]:
    return {"image_size": pipe.image_size, "channels": pipe.channels, "text_len": pipe.text_len}
