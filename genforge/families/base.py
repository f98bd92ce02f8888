"""What every family shares: the training set-up, loading a run, the data order, and the contracts.

    cfg = resolve(sections(), PRESETS, preset, overrides, run, resume)   # new, or RUN/config.json
    result = launch(FAMILY, cfg, run, build, resume, progress)          # build(runtime) -> Build
    tensors, meta, ckpt = load_run("runs/gpt-...", "gpt", prefix="module.model")

A family's `train()` is: resolve the config, check its data, then `launch()` with a `build` that
turns the runtime into a `Build` (the task, the banner, what config.json and the run folder get).
`launch` does the rest in one order for all: runtime and seed, `build`, the run directory, the
config, the Trainer (which places the modules), restore on --resume, the banner, the loop.

Tasks share `EpochOrder` (a seeded permutation per epoch, drawn with the trainer's generator, its
position checkpointed) and `train_loss` (the mean loss since the last evaluation).

`Family` is what the registry (families/__init__.py) expects of a family module; the pipeline
Protocols are what `genforge.load` returns, per kind, and what the CLI and the server rely on.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .. import checkpoint, config
from ..data.shards import Shares
from ..run import RunDir, find_checkpoint
from ..runtime import Runtime, make_runtime, seed_everything
from ..trainer import Result, Task, Trainer, micro_steps

# ----------------------------------------------------------------------------- training set-up


def run_dir(out: str | Path | None, family: str) -> RunDir:
    """--out, or runs/FAMILY-TIMESTAMP."""
    return RunDir(out) if out else RunDir.default(family)


def resolve(sections: dict[str, Any], presets: dict[str, dict], preset: str | None, overrides: dict,
            run: RunDir, resume: bool) -> dict[str, Any]:
    """A new run's config (defaults -> preset -> overrides), or a resumed one's (RUN/config.json -> overrides)."""
    if not resume:
        return config.resolve(sections, presets, preset, overrides)
    if not run.file("config.json").exists():
        raise FileNotFoundError(f"--resume: {run.file('config.json')} does not exist")
    saved = run.read_json("config.json")["config"]
    return config.resolve(config.from_saved(sections, saved), {}, None, overrides)


@dataclass
class Build:
    """What a family's `build(runtime)` hands `launch`."""
    task: Task
    banner: str  # what training is about to run, printed as 'genforge: BANNER; run: RUN'
    config: dict[str, Any] = field(default_factory=dict)  # RUN/config.json fields after family and config
    files: dict[str, Any] = field(default_factory=dict)  # other JSON files of the run, e.g. tokenizer.json


def launch(family: str, cfg: dict[str, Any], run: RunDir, build: Callable[[Runtime], Build],
           resume: bool = False, progress: bool = True) -> Result:
    """Runtime and seed, `build`, run directory, config.json, Trainer, restore on resume, banner, fit.

    `build` may change `cfg` (e.g. the vocabulary size, or steps from epochs): what it leaves there
    is what config.json and the trainer get.

    Under torchrun (WORLD_SIZE > 1) every rank runs this; rank 0 builds first (its caches are the
    others' to read), alone creates the run folder and writes its files, and every rank restores on
    --resume from the checkpoint rank 0 wrote.
    """
    tc = cfg["train"]
    rt = make_runtime(tc.device, tc.dtype, tc.threads, distributed=True)
    try:
        micro_steps(tc.grad_accum, rt.world_size)  # before any work: a recipe that cannot split is an error
        rt.same_on_every_rank("the training config", json.dumps(config.to_dict(cfg), sort_keys=True, default=str))
        run.is_main = rt.is_main
        seed_everything(tc.seed)
        with rt.main_first():
            built = build(rt)
            run.create(resume)
            run.write_json("config.json", {"family": family, "config": config.to_dict(cfg), **built.config})
            for name, doc in built.files.items():
                run.write_json(name, doc)
        tc = cfg["train"]
        trainer = Trainer(built.task, tc, run, rt, progress=progress)
        if resume:
            trainer.restore(run.checkpoint("last"))
        if rt.is_main:
            per = f"{tc.batch_size} x {tc.grad_accum // rt.world_size} x {rt.world_size} processes" \
                if rt.distributed else f"{tc.batch_size} x {tc.grad_accum}"
            print(f"genforge: {built.banner}; global batch {tc.batch_size * tc.grad_accum} ({per}); "
                  f"run: {run.path}", file=sys.stderr)
        result = trainer.fit()
    except BaseException:
        rt.close(together=False)
        raise
    rt.close()
    return result


class EpochOrder:
    """Example indices in a fresh seeded permutation per epoch, one batch at a time.

    With `drop_last` a batch never runs past the end of an epoch (a new permutation starts);
    without, the last batch of an epoch may be short. `state()` goes into resumable checkpoints.
    With `shares` of more than one slot (data/shards.py) the epoch's permutation is the run's, the
    same on every rank, and a batch comes from the drawing slot's disjoint part of it.
    """

    def __init__(self, n: int, generator: torch.Generator, drop_last: bool, shares: Shares | None = None):
        self.n, self.gen, self.drop_last, self.epoch = n, generator, drop_last, 0
        self.shares = shares if shares is not None and shares.count > 1 else None
        self.perm, self.pos = self._permutation(), 0

    def _permutation(self) -> torch.Tensor:
        if self.shares is None:
            return torch.randperm(self.n, generator=self.gen)
        return self.shares.permutation(self.n, self.epoch)

    def _mine(self) -> torch.Tensor:
        return self.perm if self.shares is None else self.shares.mine(self.perm)

    def next(self, size: int) -> torch.Tensor:
        end = self.pos + size if self.drop_last else self.pos + 1
        if end > len(self._mine()):
            self.epoch += 1
            self.perm, self.pos = self._permutation(), 0
        idx = self._mine()[self.pos:self.pos + size]
        self.pos += len(idx)
        return idx

    def state(self) -> dict[str, torch.Tensor]:
        return {"perm": self.perm, "pos": torch.tensor([self.pos]), "epoch": torch.tensor([self.epoch])}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        self.perm, self.pos = state["perm"], int(state["pos"][0])
        self.epoch = int(state["epoch"][0]) if "epoch" in state else 0  # checkpoints from before shares: 0


class IntervalLosses:
    """Mixin for tasks that keep `_recent`, the losses logged since the last evaluation: the trainer saves
    them with 'last', so a run resumed after Ctrl-C logs the same train_loss as one never stopped."""

    def interval_state(self) -> dict:
        return {"recent": self._recent}

    def set_interval_state(self, state: dict) -> None:
        if "recent" in state:
            self._recent = state["recent"]


def train_loss(recent: list[float]) -> dict[str, float]:
    """{'train_loss': mean} of the losses logged since the last evaluation (then forgotten); {} if none."""
    if not recent:
        return {}
    mean = sum(recent) / len(recent)
    recent.clear()
    return {"train_loss": mean}


# ----------------------------------------------------------------------------- loading runs


def load_run(path: str | Path, family: str, prefix: str | None = None,
             what: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """A run's checkpoint (best, else last; or the .safetensors file given): tensors, meta, file.

    Only tensors under `prefix.` (prefix removed) with a prefix. A checkpoint of another family is a
    ValueError naming `what` (default: the path), the file and the family it holds.
    """
    ckpt = find_checkpoint(path)
    found = checkpoint.read_meta(ckpt).get("family")
    if found != family:
        raise ValueError(f"{what or path}: {ckpt} holds a {found!r} run, not a {family!r} run")
    tensors, meta = checkpoint.load(ckpt, prefix=prefix)
    return tensors, meta, ckpt


def require_eval_data(args: argparse.Namespace) -> None:
    if args.data is None:
        raise ValueError(f"genforge eval {args.run}: --data FILE is required to evaluate a language model "
                         "or a classifier")


# ----------------------------------------------------------------------------- contracts


@runtime_checkable
class TextGenerationPipeline(Protocol):
    """A language model: text in, text out (the GPT family; served by /v1/completions and chat)."""
    family: str
    meta: dict[str, Any]
    context_length: int  # tokens the model sees at once

    def encode_prompt(self, prompt: str) -> list[int]: ...
    def stream(self, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8, top_k: int | None = 50,
               top_p: float | None = None, seed: int | None = None,
               num_samples: int = 1) -> Iterator[list[str]]: ...  # per step, each sample's new text
    def generate(self, prompt: str, max_new_tokens: int = 200, num_samples: int | None = None,
                 **kw) -> str | list[str]: ...  # prompt + continuation; same seed, same text
    def evaluate(self, path: str, **kw) -> dict: ...  # loss, perplexity, bits per character / byte


@runtime_checkable
class ImageGenerationPipeline(Protocol):
    """An image generator: `generate(n, seed, labels)` -> uint8 (n, H, W, C); same seed, same images."""
    family: str
    meta: dict[str, Any]
    image_size: int
    channels: int
    num_classes: int  # 0: unconditional
    class_names: list[str]

    def generate(self, n: int, seed: int | None = None, labels=None) -> np.ndarray: ...


@runtime_checkable
class ClassificationPipeline(Protocol):
    """A text classifier: `classify(texts)` -> [{'label', 'probs'}]; probabilities in `labels` order."""
    family: str
    meta: dict[str, Any]
    labels: list[str]

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...  # (N, len(labels))
    def classify(self, texts: list[str]) -> list[dict]: ...
    def classify_file(self, path: str, output: str, errors: str = "strict", text_field: str | None = None) -> int: ...
    def evaluate(self, path: str, errors: str = "strict", text_field: str | None = None,
                 label_field: str | None = None, out: str | Path | None = None) -> dict: ...


@runtime_checkable
class ImageClassificationPipeline(Protocol):
    """An image classifier: `classify(images uint8 (N, H, W, C))` -> [{'label', 'probs'}]; probabilities in
    `labels` order. Images must be image_size x image_size x channels (`read_images` decodes and resizes)."""
    family: str
    meta: dict[str, Any]
    labels: list[str]
    image_size: int
    channels: int

    def predict_proba(self, images: np.ndarray) -> np.ndarray: ...  # (N, len(labels))
    def classify(self, images: np.ndarray) -> list[dict]: ...
    def read_images(self, blobs: list[bytes], names: list[str]) -> np.ndarray: ...  # encoded files -> uint8
    def evaluate(self, path: str, split: str = "test", out: str | Path | None = None) -> dict: ...


@runtime_checkable
class TextToImagePipeline(Protocol):
    """A text-to-image model: `generate(prompt, n)` -> uint8 (n, H, W, C); same seed, same images.

    `prompt` is one caption for all n images, or a list of n captions (one per image); `guidance`
    (classifier-free guidance scale, where the model has it), `temperature` and `top_k` default to
    the run's settings when None. An empty prompt is a ValueError naming `prompt`, so is one longer
    than `text_len` words; a prompt with no known word gives unconditional images and a warning (issued
    with warnings.warn, or with `return_warnings` returned as (images, warnings): thread-safe, for servers).
    """
    family: str
    meta: dict[str, Any]
    image_size: int
    channels: int
    text_len: int  # the caption context, in words

    def generate(self, prompt: str | list[str], n: int = 1, seed: int | None = None, guidance: float | None = None,
                 temperature: float | None = None, top_k: int | None = None,
                 return_warnings: bool = False) -> np.ndarray | tuple[np.ndarray, list[str]]: ...


@runtime_checkable
class ImageTokenizerPipeline(Protocol):
    """A discrete image tokenizer (the VQ-VAE family): images <-> codes; it generates nothing by itself.

    `encode(uint8 (N, H, W, C))` -> int64 (N, code_length), each code in 0..codebook_size-1, row-major
    over the code grid (h, w) with h * w == code_length; `decode(codes)` -> uint8 (N, H, W, C).
    """
    family: str
    meta: dict[str, Any]
    image_size: int
    channels: int
    codebook_size: int
    code_length: int
    grid: tuple[int, int]

    def encode(self, images: np.ndarray) -> np.ndarray: ...
    def decode(self, codes: np.ndarray) -> np.ndarray: ...


def tokenizer_info(pipe: ImageTokenizerPipeline) -> dict[str, Any]:
    """What the server's model list says about an image tokenizer."""
    return {"image_size": pipe.image_size, "channels": pipe.channels, "codebook_size": pipe.codebook_size,
            "code_length": pipe.code_length}


def image_info(pipe: ImageGenerationPipeline) -> dict[str, Any]:
    """What the server's model list says about an image generator."""
    return {"image_size": pipe.image_size, "channels": pipe.channels, "num_classes": getattr(pipe, "num_classes", 0),
            "class_names": list(getattr(pipe, "class_names", []))}


def contract_info(pipe) -> dict[str, Any]:
    """Model-list fields of a pipeline whose family is not registered (a stand-in): by its contract."""
    if isinstance(pipe, TextToImagePipeline):
        return {"image_size": pipe.image_size, "channels": pipe.channels, "text_len": pipe.text_len}
    if isinstance(pipe, ImageGenerationPipeline):
        return image_info(pipe)
    if isinstance(pipe, ImageTokenizerPipeline):
        return tokenizer_info(pipe)
    if isinstance(pipe, ImageClassificationPipeline):
        return {"labels": list(pipe.labels), "image_size": pipe.image_size, "channels": pipe.channels}
    if isinstance(pipe, ClassificationPipeline):
        return {"labels": list(pipe.labels)}
    if isinstance(pipe, TextGenerationPipeline):
        return {"context_length": pipe.context_length}
    return {}


@runtime_checkable
class Family(Protocol):
    """A family module (genforge/families/NAME.py), as the registry, the CLI and the server use it."""
    FAMILY: str  # the registry name, also `family` in checkpoints and config.json
    DESCRIPTION: str  # one line: what the family trains
    PRESETS: dict[str, dict[str, dict[str, Any]]]  # named partial configs over sections()
    METRICS: dict[str, str]  # selection metric -> its name in `genforge train`'s last lines

    def sections(self) -> dict[str, Any]: ...  # config section name -> dataclass of defaults
    def train(self, preset: str | None = None, overrides: dict | None = None, out: str | None = None,
              resume: bool = False, init_from: str | None = None,
              progress: bool = True) -> tuple[RunDir, Result]: ...
    def pipeline_from_checkpoint(self, path, device: str = "auto", dtype: str = "fp32"): ...
    def next_steps(self, run: Path) -> list[str]: ...  # commands to try after training (CLI)
    def sample_command(self, pipe, args: argparse.Namespace) -> int: ...  # `genforge sample RUN`
    def eval_command(self, args: argparse.Namespace) -> int: ...  # `genforge eval RUN`
    def model_info(self, pipe) -> dict[str, Any]: ...  # extra fields of the server's /v1/models entry
