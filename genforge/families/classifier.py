"""The classifier family: train, cross-validate, evaluate and apply text classifiers.

    genforge train classifier --data imdb/train.jsonl.gz [--preset lstm|bag|nbbag|nbchar|cnn|transformer]
    genforge train classifier --init-from runs/gpt-... --data reviews.csv     # GPT as the encoder
    genforge eval RUN --data imdb/test.jsonl.gz      genforge classify RUN "a wonderful film"
    genforge cv --folds 5 --data train.jsonl --preset nbbag
    genforge ensemble RUN_A RUN_B --out runs/both [--weights 0.7,0.3] [--val val.jsonl]  # mean of probabilities

`train()` reads the labelled data, splits off a stratified validation set, fits the featurizer
(genforge/data/words.py), builds the model (genforge/models/classifier.py) and hands a
`ClassifierTask` to the shared Trainer through `base.launch`; at the end the best checkpoint is
evaluated on the validation (and optional test) data, with metrics.json and plots in
RUN/eval/<split>/. Before that, `calibrate` fits a temperature on the validation split (never the
test split; `--fit.calibrate=false`: T = 1) into the best checkpoint's metadata, and every pipeline
divides the logits by it. `--fit.l1` adds an L1 penalty (`l1_penalty`), `--fit.word_dropout` drops training
texts' features at random each batch (genforge/data/augment.py). The default preset (nbbag)
first tunes n-grams, NB smoothing, regularisation and epochs on the validation split
(genforge/families/tune.py; `--fit.tune=false`: the preset as written; settings given on the command
line are kept). `--fit.refit=true` then trains again on train + validation with what validation chose
(`refit`). Hashed n-grams are made once per setting (`feature_rows`, cached on disk by
genforge/data/featcache.py): tuning trials, CV folds and held-out folds take rows of them, and the NB
bag trains only the rows its training texts reach (`ReachedRows`). `ClassifierPipeline`
rebuilds everything from a checkpoint: `.classify(texts)`, `.evaluate(file)`; `sample_command`,
`eval_command`, `next_steps` and `model_info` answer the CLI and the server.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .. import checkpoint, config
from ..data import augment, featcache
from ..data.labelled import (Labelled, encode_labels, label_vocabulary, read_labelled, read_texts,
                             stratified_split)
from ..data.tokenizers import tokenizer_from_dict
from ..data.vectors import embedding_init
from ..data.words import BagFeatures, Featurizer
from ..metrics import calibration
from ..models.classifier import BagBody, ClassifierConfig, TextClassifier, classification_loss, probabilities
from ..models.gpt import GPTConfig
from ..run import RunDir, find_checkpoint
from ..runtime import Runtime, make_runtime
from ..trainer import Result, Trainer, TrainConfig
from . import base, classify, tune

FAMILY = "classifier"
DESCRIPTION = "text classifiers: LSTM, fastText- and NB-style bags, transformers, GPT encoders"
METRICS = {"val_loss": "validation loss", "val_error": "validation error"}


@dataclass
class LabelledDataConfig:
    path: str = ""  # training data: class folders (aclImdb), .csv or .jsonl (.gz too)
    val_path: str = ""  # validation data; empty = a stratified val_fraction of the training data
    test_path: str = ""  # optional test data, evaluated with the best checkpoint after training
    val_fraction: float = 0.1
    text_field: str = "text"  # CSV column / JSON key of the text
    label_field: str = "label"  # CSV column / JSON key of the label (string or integer)
    tokenizer: Literal["word", "ngram", "char", "bpe"] = "ngram"
    vocab_size: int = 10000  # word: top-k words (incl. padding and out-of-vocabulary); bpe: merges
    max_len: int = 100  # tokens per text for sequence models (longer texts are truncated)
    pad: Literal["pre", "post"] = "pre"  # pre: pad and truncate at the start (Keras' default)
    ngram: int = 2  # ngram: 1..n word n-grams
    char_ngrams: tuple[int, int] = (0, 0)  # ngram: also each word's character lo..hi-grams, e.g. 2,5; 0,0 = none
    buckets: int = 1 << 21  # ngram: hash buckets
    punctuation: bool = False  # keep punctuation marks as tokens
    max_chars: int = 100_000  # texts are cut to this many characters first
    errors: Literal["strict", "replace"] = "strict"  # invalid UTF-8: fail (naming the line) or replace

    def validate(self):
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        for name in ("vocab_size", "max_len", "ngram", "buckets", "max_chars"):
            if getattr(self, name) <= 0:
                raise ValueError(f"data.{name} must be positive, got {getattr(self, name)}")
        lo, hi = self.char_ngrams if len(self.char_ngrams) == 2 else (-1, -1)
        if (lo, hi) != (0, 0) and not 1 <= lo <= hi:
            raise ValueError(f"data.char_ngrams must be two lengths lo,hi with 1 <= lo <= hi (or 0,0), got {self.char_ngrams}")


@dataclass
class FitConfig:
    epochs: float = 10.0  # passes over the training data (sets train.max_iters); 0 = use train.max_iters
    class_weights: Literal["none", "balanced"] = "none"  # balanced: weight classes by n / (K * n_class)
    select: Literal["loss", "accuracy", "last"] = "loss"  # best checkpoint / early stopping on; last = no selection
    evals_per_epoch: int = 1  # validation passes per epoch (sets train.eval_interval when epochs > 0)
    eval_batch: int = 256  # texts per batch when evaluating
    calibrate: bool = True  # fit a temperature on the validation split after training (false: T = 1)
    l1: float = 0.0  # L1 penalty weight: adds l1 * sum |w| over matrices and embeddings (never biases, norms)
    word_dropout: float = 0.0  # drop each feature (n-gram / token) of a training text with this probability,
    #                            drawn anew every batch (data/augment.py); validation and test never
    tune: bool = False  # choose n-grams, NB smoothing, regularisation and epochs on validation (families/tune.py)
    tune_trials: int = 4  # settings the search draws (the preset as written is one of them)
    tune_budget: float = 24.0  # epochs the search may spend, summed over its trials (4 trials: 4x2 + 2x4 + 1x8)
    tune_seconds: float = 0.0  # wall-clock cap of the search as well; 0 = none (a clock is not reproducible)
    tune_once: bool = False  # cv: search on the first fold only and reuse its choice (faster; see cross_validate)
    refit: bool = False  # after choosing on validation, train again on train + validation texts (see `refit`)

    def validate(self):
        if self.epochs < 0 or self.eval_batch <= 0 or self.evals_per_epoch <= 0:
            raise ValueError("fit.epochs must be >= 0, fit.eval_batch and fit.evals_per_epoch positive")
        if not (self.l1 >= 0 and math.isfinite(self.l1)):
            raise ValueError(f"fit.l1 must be a finite number >= 0, got {self.l1}")
        if not 0 <= self.word_dropout < 1:
            raise ValueError(f"fit.word_dropout must be in [0, 1), got {self.word_dropout}")
        if self.tune_trials <= 0 or self.tune_budget <= 0 or self.tune_seconds < 0:
            raise ValueError("fit.tune_trials and fit.tune_budget must be positive, fit.tune_seconds >= 0")


def sections() -> dict[str, Any]:
    return {"model": ClassifierConfig(), "data": LabelledDataConfig(), "fit": FitConfig(),
            "train": TrainConfig(batch_size=32, lr=1e-3, min_lr=1e-4, warmup_iters=0, weight_decay=0.0,
                                 log_interval=50, samples=False, dtype="fp32")}


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # article 004 exactly: top 10000 words, length 100, Embedding 16, LSTM 16 (dropout 0.2), Dense 1
    # sigmoid; binary cross-entropy, Adam (lr 1e-3, constant), batch 32, 10 epochs, final model kept
    "lstm": {
        "model": {"arch": "lstm", "embed_dim": 16, "hidden": 16, "dropout": 0.2, "pool": "last"},
        "data": {"tokenizer": "word", "vocab_size": 10000, "max_len": 100, "pad": "pre"},
        "train": {"batch_size": 32, "lr": 1e-3, "schedule": "constant", "warmup_iters": 0, "weight_decay": 0.0,
                  "grad_clip": 0.0, "beta1": 0.9, "beta2": 0.999},
        "fit": {"epochs": 10, "select": "last"},
    },
    # fastText-style: mean of hashed uni+bigram embeddings -> linear
    "bag": {
        "model": {"arch": "bag", "embed_dim": 10, "dropout": 0.0},
        "data": {"tokenizer": "ngram", "ngram": 2, "buckets": 1 << 21},
        "train": {"batch_size": 64, "lr": 5e-3, "min_lr": 5e-4, "schedule": "linear", "warmup_iters": 0,
                  "weight_decay": 0.0, "grad_clip": 0.0},
        "fit": {"epochs": 5},
    },
    # NBSVM-like: a linear model on binary uni+bi+trigrams scaled by naive-Bayes log-count ratios
    "nbbag": {
        "model": {"arch": "bag", "embed_dim": 0, "nb": True, "nb_prior": 0.0},
        "data": {"tokenizer": "ngram", "ngram": 3, "buckets": 1 << 22},
        "train": {"batch_size": 64, "lr": 1e-3, "min_lr": 1e-4, "schedule": "linear", "warmup_iters": 0,
                  "weight_decay": 0.0, "grad_clip": 0.0},
        "fit": {"epochs": 6, "tune": True},
    },
    # nbbag with each word's character 2..5-grams in the same buckets: subwords carry short texts
    "nbchar": {
        "model": {"arch": "bag", "embed_dim": 0, "nb": True, "nb_prior": 0.0},
        "data": {"tokenizer": "ngram", "ngram": 3, "buckets": 1 << 22, "char_ngrams": (2, 5)},
        "train": {"batch_size": 64, "lr": 1e-3, "min_lr": 1e-4, "schedule": "linear", "warmup_iters": 0,
                  "weight_decay": 0.0, "grad_clip": 0.0},
        "fit": {"epochs": 6},
    },
    # Kim (2014): word embeddings, convolutions of widths 3/4/5 (100 filters each), max over time, dropout 0.5
    "cnn": {
        "model": {"arch": "cnn", "embed_dim": 128, "hidden": 100, "widths": (3, 4, 5), "dropout": 0.5},
        "data": {"tokenizer": "word", "vocab_size": 30000, "max_len": 64, "pad": "post"},
        "train": {"batch_size": 50, "lr": 1e-3, "min_lr": 1e-4, "warmup_iters": 0, "weight_decay": 0.0,
                  "grad_clip": 0.0},
        "fit": {"epochs": 4},
    },
    # a small transformer encoder over words, trained from scratch
    "transformer": {
        "model": {"arch": "transformer", "embed_dim": 64, "n_layer": 2, "n_head": 4, "dropout": 0.1,
                  "pool": "mean"},
        "data": {"tokenizer": "word", "vocab_size": 20000, "max_len": 256, "pad": "post"},
        "train": {"batch_size": 32, "lr": 1e-3, "min_lr": 1e-4, "warmup_iters": 100, "weight_decay": 0.01},
        "fit": {"epochs": 3},
    },
}
DEFAULT_PRESET = "nbbag"  # the most accurate CPU model is what `train classifier` gives without --preset
# With --init-from a GPT run: the GPT's tokenizer, post-padding and mean pooling (set automatically).
GPT_INIT = {"model": {"arch": "gpt", "pool": "mean", "pad": "post", "dropout": 0.1}}

# ----------------------------------------------------------------------------- task


def _batches(n: int, size: int):
    for s in range(0, n, size):
        yield torch.arange(s, min(n, s + size))


@torch.no_grad()
def predict(model: TextClassifier, feats, rt: Runtime, batch: int) -> torch.Tensor:
    """Logits (N, K) of every example, in order."""
    was = model.training
    model.eval()
    out = []
    for idx in _batches(len(feats), batch):
        with rt.autocast():
            logits, _ = model(*(t.to(rt.device) for t in feats.batch(idx)))
        out.append(logits.float().cpu())
    model.train(was)
    return torch.cat(out)


class ClassifierTask(base.IntervalLosses):
    item_name = "doc"

    def __init__(self, model: TextClassifier, train_x, train_y: torch.Tensor, val_x, val_y: torch.Tensor | None,
                 featurizer: Featurizer, labels: list[str], cfg: dict[str, Any], rt: Runtime,
                 extra_meta: dict[str, Any]):
        self.model, self.train_x, self.train_y, self.val_x, self.val_y = model, train_x, train_y, val_x, val_y
        self.featurizer, self.labels, self.cfg, self.rt, self.extra_meta = featurizer, labels, cfg, rt, extra_meta
        tc: TrainConfig = cfg["train"]
        self.modules = {"model": model}
        # the linear bag trains on the rows its texts reach; under DDP on the full table (the ranks' rows differ)
        self.reached = None
        if model.config.arch == "bag" and model.config.embed_dim == 0 and not rt.distributed:
            self.reached = ReachedRows(model.body, train_x.ids.unique())
            self.train_x = BagFeatures(self.reached.ids(train_x.ids), train_x.offsets)
        self.optimizers = optimizers(model, tc, self.reached)
        self.items_per_step = tc.batch_size * tc.grad_accum
        fit: FitConfig = cfg["fit"]
        self.select_metric = {"loss": "val_loss", "accuracy": "val_error", "last": None}[fit.select]
        if val_x is None:
            self.select_metric = None
        self.class_weight = None
        if fit.class_weights == "balanced":
            counts = torch.bincount(train_y, minlength=len(labels)).float()
            self.class_weight = (len(train_y) / (len(labels) * counts.clamp(min=1))).to(rt.device)
        self._recent: list[float] = []

    def bind(self, trainer: Trainer) -> None:
        self.trainer = trainer  # a fresh permutation per epoch; the last batch may be short
        self.order = base.EpochOrder(len(self.train_y), trainer.generator, drop_last=False, shares=trainer.shares)

    def _loss(self):
        if self.reached is not None:
            self.reached.train_mode()
        idx = self.order.next(self.cfg["train"].batch_size)
        batch = self.train_x.batch(idx)
        p = self.cfg["fit"].word_dropout
        if p > 0:
            gen = self.trainer.generator
            batch = (augment.drop_bag(*batch, p, gen) if isinstance(self.train_x, BagFeatures)
                     else augment.drop_tokens(*batch, self.train_x.pad, p, gen))
        inputs = [t.to(self.rt.device) for t in batch]
        targets = self.train_y[idx].to(self.rt.device)
        _, loss = self.trainer.module("model")(*inputs, targets=targets, class_weight=self.class_weight)
        self._recent.append(loss.item())  # the data loss, comparable with val_loss
        l1 = self.cfg["fit"].l1
        if l1 > 0:
            loss = loss + l1 * l1_penalty(self.model, inputs)
        return loss, {"loss": self._recent[-1]}

    def phases(self, step):
        return [(tuple(self.optimizers), self._loss)]

    def before_save(self) -> None:
        if self.reached is not None:
            self.reached.full_mode()

    def evaluate(self) -> dict[str, float]:
        self.before_save()
        out = base.train_loss(self._recent)
        if self.val_x is not None:
            logits = predict(self.model, self.val_x, self.rt, self.cfg["fit"].eval_batch)
            acc = float((probabilities(logits).argmax(1) == self.val_y).float().mean())
            out.update(val_loss=float(classification_loss(logits, self.val_y)), val_accuracy=acc, val_error=1 - acc)
        return out

    def on_eval(self, step, monitor):
        pass

    def meta(self) -> dict[str, Any]:
        return {"family": FAMILY, "config": config.to_dict(self.cfg), "featurizer": self.featurizer.to_dict(),
                "labels": self.labels, **self.extra_meta}

    def rng_state(self):
        return self.order.state()

    def set_rng_state(self, state):
        self.order.set_state(state)


def l1_penalty(model: TextClassifier, inputs: list[torch.Tensor]) -> torch.Tensor:
    """sum |w| over the weights L1 makes sense for: every matrix and embedding table (the NB bag's n-gram
    weights, LSTM / attention / MLP / head matrices, token and position embeddings), never biases or
    norm gains (1-D). The fastText bag's sparse n-gram table counts only the rows of this batch's
    n-grams, as SparseAdam moves only those (lazy L1, and a sparse gradient)."""
    sparse = model.body.emb.weight if model.config.arch == "bag" and model.config.embed_dim > 0 else None
    total = sum(p.abs().sum() for p in model.parameters() if p.dim() >= 2 and p is not sparse)
    if sparse is not None:
        rows = F.embedding(inputs[0].unique(), sparse, sparse=True)  # (n ids, E), gradient stays sparse
        total = total + rows.abs().sum()
    return total


class ReachedRows:
    """The NB bag trains on the M rows of its (V, K) table that training texts reach: their ids are
    renumbered 0..M-1 once (`ids`), and while it trains the body holds (M, K) slices of w and r
    (`train_mode`); the full table is written back before every validation pass and checkpoint
    (`full_mode`). Exactly dense AdamW: a row no training text contains has a zero gradient forever,
    starts at 0 and stays 0 (its moments stay 0, decay scales 0). The NB bag hashes into 2^22 buckets
    while 10k short texts reach a few 100k of them: a step costs M rows, not V (a dense gradient, a
    gather and a scatter of V rows were half of `cv`'s CPU time)."""

    def __init__(self, body: BagBody, rows: torch.Tensor):
        self.body, self.rows, self.compact = body, rows, False
        self.w = torch.nn.Parameter(body.w.detach()[rows])  # (M, K): what the optimizer moves

    def ids(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.rows, ids)  # bucket ids of training texts -> 0..M-1

    @torch.no_grad()
    def train_mode(self) -> None:
        if not self.compact:  # the full table may have been moved or loaded (resume) since
            self.full, rows = (self.body.w, self.body.r), self.rows.to(self.body.w.device)
            self.w.data = self.full[0][rows]
            self.body.w, self.body.r, self.compact = self.w, self.full[1][rows], True

    @torch.no_grad()
    def full_mode(self) -> None:
        if self.compact:
            w, r = self.full
            w.index_copy_(0, self.rows.to(w.device), self.w)
            self.body.w, self.body.r, self.compact = w, r, False


def optimizers(model: TextClassifier, tc: TrainConfig, reached: ReachedRows | None = None
               ) -> dict[str, torch.optim.Optimizer]:
    """AdamW with weight decay (L2) on matrices and embeddings, none on biases and norms; the
    fastText bag's n-gram embeddings get sparse gradients and SparseAdam (lazy: only rows seen in
    a batch move, no weight decay). The NB-linear bag stays dense: on IMDB, dense Adam reached
    92.08% where lazy SparseAdam reached 91.81% with the same steps; given the rows the training
    texts reach (`ReachedRows`), AdamW moves those rows alone (the same updates)."""
    sparse = [model.body.emb.weight] if model.config.arch == "bag" and model.config.embed_dim > 0 else []
    ids = {id(p) for p in sparse + ([model.body.w] if reached is not None else [])}
    decay = [p for p in model.parameters() if p.dim() >= 2 and id(p) not in ids]
    rest = [p for p in model.parameters() if p.dim() < 2 and id(p) not in ids]
    opts: dict[str, torch.optim.Optimizer] = {"adamw": torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=tc.lr, betas=(tc.beta1, tc.beta2))}
    if sparse:
        # SparseAdam refuses lr 0; a vanishing lr behaves the same (the trainer scales it per step)
        opts["sparse"] = torch.optim.SparseAdam(sparse, lr=max(tc.lr, 1e-30), betas=(tc.beta1, tc.beta2))
    if reached is not None:
        opts["rows"] = torch.optim.AdamW([reached.w], lr=tc.lr, betas=(tc.beta1, tc.beta2),
                                         weight_decay=tc.weight_decay)
    return opts

# ----------------------------------------------------------------------------- training


def _gpt_source(init_from: str) -> tuple[GPTConfig, dict[str, torch.Tensor], Any, str]:
    """A classifier starts from a GPT run: its config, weights and tokenizer."""
    tensors, meta, ckpt = base.load_run(init_from, "gpt", prefix="module.model", what=f"--init-from {init_from}")
    return (config.from_dict(GPTConfig, meta["config"]["model"], "model"), tensors,
            tokenizer_from_dict(meta["tokenizer"]), str(ckpt))


def _read(path: str, data: LabelledDataConfig, where: str) -> Labelled:
    if not path:
        raise ValueError(f"no {where} data: pass --data FILE (class folders, .csv or .jsonl)")
    return read_labelled(path, data.text_field, data.label_field, data.errors)


def feature_rows(texts: list[str]) -> Callable[[Featurizer, Any], Any]:
    """rows(featurizer, idx): the features of texts[idx]. An ngram featurizer (stateless) hashes all of
    `texts` once per setting (and through the on-disk cache), so folds and tuning trials only take rows."""
    memo: dict[str, Any] = {}

    def rows(f: Featurizer, idx):
        if f.kind != "ngram":
            return f.transform([texts[i] for i in idx])
        k = json.dumps(f.to_dict(), sort_keys=True)
        if k not in memo:
            memo[k] = featcache.transform(f, texts)
        return featcache.subset(memo[k], idx)
    return rows


def fit(cfg: dict[str, Any], run: RunDir, train_set: Labelled, val_set: Labelled | None,
        init_from: str | None = None, resume: bool = False, progress: bool = True,
        preset: str | None = None, features: Callable[[Featurizer], tuple] | None = None,
        fixed: set[str] = frozenset(), calibrated: bool = True) -> Result:
    """Train on in-memory labelled data (used by `train` and by each fold of `cross_validate`);
    `features(featurizer)` gives (train features, val features or None), by default from `feature_rows`.
    With fit.tune, `tune.search` picks the settings (but the `fixed` "section.field" ones) first, each trial
    training on train_set; calibrated=False (a trial) skips `calibrate`."""
    if features is None:
        n, texts = len(train_set.texts), train_set.texts + (val_set.texts if val_set is not None else [])
        rows = feature_rows(texts)
        features = lambda f: (rows(f, range(n)), rows(f, range(n, len(texts))) if val_set is not None else None)
    tuned = {}
    if cfg["fit"].tune and not resume and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        print("genforge: fit.tune is off under torchrun (a trial is one process' run): the preset as written",
              file=sys.stderr)
    elif cfg["fit"].tune and not resume:
        if val_set is None or init_from or cfg["model"].arch != "bag" or cfg["data"].tokenizer != "ngram":
            raise ValueError("fit.tune=true tunes an n-gram bag (preset nbbag or bag) on a validation split: give "
                             "data.val_fraction > 0 or data.val_path, or pass --fit.tune=false")

        def trial(c: dict[str, Any]) -> float:
            # one validation pass, after the last step (in every measured search the validation loss fell to the
            # last epoch), and no calibration: a third of cv's tuned time went to evaluations and checkpoints
            classify.epochs_to_steps(c, len(train_set.texts))
            c = tune.apply(c, {"fit.epochs": 0.0, "train.eval_interval": c["train"].max_iters})
            with tempfile.TemporaryDirectory(prefix="genforge-tune-") as tmp:
                r = fit(c, RunDir(tmp), train_set, val_set, progress=False, preset=preset, features=features,
                        calibrated=False)
            return r.best if r.best is not None else r.metrics["val_loss"]
        cfg, tuned["tune"] = tune.search(cfg, trial, fixed)

    def build(rt: Runtime) -> base.Build:
        data: LabelledDataConfig = cfg["data"]
        tc: TrainConfig = cfg["train"]
        saved = run.read_json("config.json") if resume else None
        labels = saved["labels"] if saved else label_vocabulary(train_set.labels, train_set.source)
        y = torch.from_numpy(encode_labels(train_set, labels))
        val_y = torch.from_numpy(encode_labels(val_set, labels)) if val_set is not None else None

        gpt_cfg, gpt_state, extra = None, None, dict(tuned)
        if saved and "tune" in saved:  # a resumed run keeps the record of what tuning chose
            extra["tune"] = saved["tune"]
        if resume:
            featurizer = Featurizer.from_dict(run.read_json("featurizer.json"))
            if saved.get("gpt_config"):
                gpt_cfg = config.from_dict(GPTConfig, saved["gpt_config"], "gpt")
        elif init_from:
            gpt_cfg, gpt_state, tok, source = _gpt_source(init_from)
            max_len = min(data.max_len, gpt_cfg.block_size)
            featurizer = Featurizer(tok.kind, max_len, tok.vocab_size, pad="post", max_chars=data.max_chars,
                                    tokenizer=tok)
            extra["init_from"] = source
        else:
            featurizer = Featurizer(data.tokenizer, data.max_len, data.vocab_size, data.ngram, data.buckets, data.pad,
                                    data.punctuation, data.max_chars, char_ngrams=data.char_ngrams).fit(train_set.texts)
        if gpt_cfg is not None:
            extra["gpt_config"] = dataclasses.asdict(gpt_cfg)
        train_x, val_x = features(featurizer)
        cfg["model"] = dataclasses.replace(cfg["model"], vocab_size=featurizer.num_ids, num_classes=len(labels),
                                           max_len=featurizer.max_len, pad=featurizer.pad)
        model = TextClassifier(cfg["model"], gpt_cfg)
        if gpt_state is not None:
            model.body.gpt.load_state_dict(gpt_state)
        m: ClassifierConfig = cfg["model"]
        if m.vectors and not resume:  # pre-trained word vectors (genforge/data/vectors.py)
            if featurizer.kind != "word":
                raise ValueError(f"model.vectors needs data.tokenizer=word, not {featurizer.kind}")
            extra["vectors"] = {"file": m.vectors, "vocabulary_found": embedding_init(
                m.vectors, featurizer.vocab, model.word_embedding().weight)}
        if m.freeze_vectors:
            model.word_embedding().weight.requires_grad_(False)
        if m.arch == "bag" and m.embed_dim == 0 and m.nb and not resume:
            assert isinstance(train_x, BagFeatures)
            counts = train_x.counts(y.numpy(), len(labels), featurizer.num_ids)
            model.body.set_nb_ratios(torch.from_numpy(counts), m.nb_alpha)

        if not resume:  # epochs -> steps and evaluations
            classify.epochs_to_steps(cfg, len(y))
            tc = cfg["train"]
        banner = (f"{m.arch} classifier with {model.num_params() / 1e6:.2f}M parameters, {len(labels)} classes "
                  f"({', '.join(labels[:6])}{', ...' if len(labels) > 6 else ''}), {len(y):,} train / "
                  f"{len(val_y) if val_y is not None else 0:,} val texts, {featurizer.kind} features "
                  f"({featurizer.num_ids:,} ids), {tc.max_iters} steps")
        task = ClassifierTask(model, train_x, y, val_x, val_y, featurizer, labels, cfg, rt, extra)
        return base.Build(task, banner, config={"labels": labels, "preset": preset, "init_from": init_from, **extra},
                          files={"featurizer.json": featurizer.to_dict()})

    result = base.launch(FAMILY, cfg, run, build, resume, progress)
    if run.is_main and val_set is not None and calibrated:
        calibrate(run, val_set, cfg["fit"].calibrate, cfg["train"].device, features)
    return result


def calibrate(run: RunDir, val_set: Labelled, enabled: bool = True, device: str = "auto",
              features: Callable[[Featurizer], tuple] | None = None) -> float:
    """Fit the temperature of the best checkpoint on the validation texts (never the test split) and
    write it into that checkpoint's metadata (`calibration`), where every pipeline finds it."""
    ckpt = find_checkpoint(run.path)
    pipe = ClassifierPipeline.from_checkpoint(ckpt, device=device)
    y = torch.from_numpy(encode_labels(val_set, pipe.labels))
    logits = (predict(pipe.model, features(pipe.featurizer)[1], pipe.rt, pipe.batch_size) if features
              else pipe.scores(val_set.texts))
    return classify.calibrate_checkpoint(ckpt, logits, y, enabled, "texts")


def _resolve(preset, overrides, init_from, resume, run: RunDir) -> dict[str, Any]:
    """The preset (nbbag by default) with a GPT encoder's fixed settings layered over it, or the saved config."""
    layers = {}
    if not resume:
        if preset is None and not init_from:
            preset = DEFAULT_PRESET
        if preset is not None and preset not in PRESETS:
            config.resolve(sections(), PRESETS, preset, {})  # raises the unknown-preset error
        layers = {k: dict(v) for k, v in PRESETS.get(preset, {}).items()}
        for name, values in (GPT_INIT if init_from else {}).items():  # a GPT encoder fixes these
            layers.setdefault(name, {}).update(values)
    return base.resolve(sections(), {"chosen": layers}, "chosen", overrides, run, resume)


def _given(overrides: dict) -> set[str]:
    """"section.field" of every override: settings the user chose, which tuning keeps."""
    return {f"{section}.{k}" for section, values in overrides.items() for k in values}


def train(preset: str | None = None, overrides: dict | None = None, out: str | None = None,
          resume: bool = False, init_from: str | None = None, progress: bool = True) -> tuple[RunDir, Result]:
    """Train (or resume) a classifier; evaluate its best checkpoint on validation and test data."""
    overrides = overrides or {}
    run = base.run_dir(out, FAMILY)
    cfg = _resolve(preset, overrides, init_from, resume, run)
    data: LabelledDataConfig = cfg["data"]
    full = _read(data.path, data, "training")
    if data.val_path:
        train_set, val_set = full, _read(data.val_path, data, "validation")
    elif data.val_fraction > 0:
        y = encode_labels(full, label_vocabulary(full.labels, full.source))
        tr, va = stratified_split(y, data.val_fraction, cfg["train"].seed)
        train_set, val_set = full.subset(tr), full.subset(va)
    else:
        train_set, val_set = full, None
    if cfg["fit"].refit and (val_set is None or init_from):
        raise ValueError("fit.refit=true needs a validation split (data.val_fraction > 0 or data.val_path) "
                         "and no --init-from")
    result = fit(cfg, run, train_set, val_set, init_from=None if resume else init_from, resume=resume,
                 progress=progress, preset=preset, fixed=_given(overrides))
    if run.is_main and val_set is not None:  # the validation-split model's numbers (before any refit)
        ClassifierPipeline.from_checkpoint(run.path, device=cfg["train"].device).evaluate_set(
            val_set, out=run.file("eval") / "val")
    if cfg["fit"].refit and not resume:
        result = refit(run, train_set, val_set, progress, preset)
    if run.is_main and data.test_path:
        pipe = ClassifierPipeline.from_checkpoint(run.path, device=cfg["train"].device)
        pipe.evaluate_set(_read(data.test_path, data, "test"), out=run.file("eval") / "test")
    return run, result


def refit(run: RunDir, train_set: Labelled, val_set: Labelled, progress: bool = False,
          preset: str | None = None) -> Result:
    """fit.refit: train again, in RUN/refit, on the training and validation texts together with what the
    validation split chose (tuned settings, epochs; the final checkpoint, no selection), then make that model
    the run's checkpoints/best.safetensors, keeping the validation model's temperature (and tuning record).
    The validation-split model stays as checkpoints/validation.safetensors: only its validation
    probabilities are honest (e.g. to weigh an ensemble); eval/val holds its metrics."""
    chosen = find_checkpoint(run.path)
    meta = checkpoint.read_meta(chosen)
    cfg = tune.apply(config.from_saved(sections(), meta["config"]),
                     {"fit.tune": False, "fit.refit": False, "fit.select": "last"})
    both = Labelled(train_set.texts + val_set.texts, train_set.labels + val_set.labels,
                    train_set.where + val_set.where, train_set.source)
    sub = RunDir(run.path / "refit")
    result = fit(cfg, sub, both, None, progress=progress, preset=preset)
    if run.is_main:
        os.replace(chosen, run.checkpoint("validation"))
        run.checkpoint("last").unlink(missing_ok=True)  # the validation model's: nothing to resume from
        tensors, final = checkpoint.load(sub.checkpoint("last"), prefix="module.model")  # without optimizer states
        final.pop("resume", None)
        kept = {k: meta[k] for k in ("calibration", "tune") if k in meta}
        checkpoint.save(run.checkpoint("best"), {f"module.model.{k}": v for k, v in tensors.items()},
                        {**final, **kept,
                         "refit": {"texts": len(both), "validation_model": "checkpoints/validation.safetensors"}})
        sub.checkpoint("last").unlink()
        print(f"genforge: refitted on {len(both):,} texts (train + validation) with the validation run's "
              f"settings and temperature: {run.checkpoint('best')}", file=sys.stderr)
    return result


def cross_validate(preset: str | None = None, overrides: dict | None = None, folds: int = 5,
                   out: str | None = None, init_from: str | None = None, progress: bool = False) -> dict:
    """k-fold stratified cross-validation: train on k-1 folds (early stopping on a stratified split of
    them), measure on the held-out fold; returns per-fold metrics and the mean and std of each. With
    fit.tune every fold runs its own search on its own training split, so no held-out fold ever
    influences the model measured on it. fit.tune_once=true searches on the first fold only and the
    other folds train with its choice: a tenth of the search, but the first fold's validation texts are
    held-out texts of the other folds, a small optimistic bias the report states (`tune_once`)."""
    overrides = overrides or {}
    root = Path(out) if out else RunDir.default("cv").path
    cfg0 = _resolve(preset, overrides, init_from, False, RunDir(root))
    data: LabelledDataConfig = cfg0["data"]
    full = _read(data.path, data, "training")
    labels = label_vocabulary(full.labels, full.source)
    y = encode_labels(full, labels)
    rows = feature_rows(full.texts)  # n-grams are hashed once for all folds (and tuning trials)
    chosen: dict[str, Any] = {}  # fit.tune_once: what the first fold's search chose, for every later fold

    def run_fold(k: int, train_idx, val_idx, test_idx) -> dict:
        cfg = _resolve(preset, overrides, init_from, False, RunDir(root))
        if chosen:
            cfg = tune.apply(cfg, {**chosen, "fit.tune": False})
        val_set = full.subset(val_idx) if val_idx is not None else None
        run = RunDir(root / f"fold{k + 1}")
        fit(cfg, run, full.subset(train_idx), val_set, init_from=init_from, progress=progress, preset=preset,
            features=lambda f: (rows(f, train_idx), rows(f, val_idx) if val_idx is not None else None),
            fixed=_given(overrides))
        pipe = ClassifierPipeline.from_checkpoint(run.path, device=cfg["train"].device)
        once, own = cfg0["fit"].tune_once, (pipe.meta.get("tune") or {}).get("chosen", {})
        if once:
            chosen.update(own)
        picked = chosen or own
        tuned = {"tuned": dict(picked), "tune_once": once} if picked else {}
        return pipe.evaluate_set(full.subset(test_idx), out=run.file("eval") / "heldout",
                                 features=rows(pipe.featurizer, test_idx), **tuned)

    return classify.cross_validate(y, folds, cfg0["train"].seed, data.val_fraction, root, labels, run_fold)

# ----------------------------------------------------------------------------- inference


class ClassifierPipeline:
    """A trained classifier with its featurizer: `classify(texts)`, `predict_proba`, `evaluate(file)`.

    Probabilities are calibrated: the head's logits are divided by the temperature fitted on the
    validation split (`meta['calibration']`, T = 1 when absent) before the sigmoid / softmax."""

    family = FAMILY

    def __init__(self, model: TextClassifier, featurizer: Featurizer, labels: list[str], meta: dict[str, Any],
                 runtime: Runtime, batch_size: int = 256):
        self.model, self.featurizer, self.labels, self.meta, self.rt = model, featurizer, labels, meta, runtime
        self.batch_size = batch_size
        self.temperature = classify.temperature(meta)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], meta: dict[str, Any], rt: Runtime) -> ClassifierPipeline:
        cfg = config.from_dict(ClassifierConfig, meta["config"]["model"], "model")
        gpt_cfg = config.from_dict(GPTConfig, meta["gpt_config"], "gpt") if meta.get("gpt_config") else None
        model = TextClassifier(cfg, gpt_cfg)
        checkpoint.load_module(model, state)
        model.to(rt.device).eval()
        return cls(model, Featurizer.from_dict(meta["featurizer"]), meta["labels"], meta, rt,
                   meta["config"]["fit"]["eval_batch"])

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", dtype: str = "fp32") -> ClassifierPipeline:
        tensors, meta, _ = base.load_run(path, FAMILY)
        rt = make_runtime(device, dtype)
        if "ensemble" in meta:
            return EnsemblePipeline.from_tensors(tensors, meta, rt)
        p = "module.model."
        return cls.from_state({k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}, meta, rt)

    def scores(self, texts: list[str]) -> torch.Tensor:
        """Uncalibrated logits (N, 1 if binary else K); `probabilities(scores / temperature)` are the outputs."""
        _check_texts(texts)
        return predict(self.model, self.featurizer.transform(list(texts)), self.rt, self.batch_size)

    def predict_proba(self, texts: list[str], calibrated: bool = True) -> np.ndarray:
        """(N, num_classes) probabilities, columns in the order of `labels` (raw with calibrated=False)."""
        _check_texts(texts)
        if not texts:
            return np.zeros((0, len(self.labels)))
        return probabilities(self.scores(texts) / (self.temperature if calibrated else 1.0)).numpy()

    def classify(self, texts: list[str]) -> list[dict]:
        """[{'label': most likely class, 'probs': {class: probability}}] for each text."""
        probs = self.predict_proba(texts)
        return [{"label": self.labels[int(p.argmax())], "probs": {c: float(v) for c, v in zip(self.labels, p)}}
                for p in probs]

    def evaluate_set(self, data: Labelled, out: Path | None = None, features=None, **extra) -> dict:
        """Every metric of the calibrated probabilities, plus `ece_uncalibrated`, `log_loss_uncalibrated`
        (the raw probabilities'), the `temperature` and what tuning chose (`tuned`); `features`: data's
        texts already featurized; `extra`: more entries of the report."""
        y = encode_labels(data, self.labels)
        logits = self.scores(data.texts) if features is None else predict(self.model, features, self.rt, self.batch_size)
        tuned = {"tuned": self.meta["tune"]["chosen"]} if "tune" in self.meta else {}
        return classify.report(y, logits, self.temperature, self.labels, out, data=data.source,
                               **{**tuned, **extra})

    def evaluate(self, path: str, errors: str = "strict", text_field: str | None = None,
                 label_field: str | None = None, out: str | Path | None = None) -> dict:
        """Every classification metric on a labelled file; with `out`, metrics.json and plots there."""
        d = self.meta["config"]["data"]
        data = read_labelled(path, text_field or d["text_field"], label_field or d["label_field"], errors)
        return self.evaluate_set(data, out)

    def classify_file(self, path: str, output: str, errors: str = "strict", text_field: str | None = None) -> int:
        """Write one JSON line per input text: the input's text, label and probabilities."""
        data = read_texts(path, text_field or self.meta["config"]["data"]["text_field"], errors)
        n = 0
        with open(output, "w", encoding="utf-8") as f:
            for start in range(0, len(data.texts), 1024):
                chunk = data.texts[start:start + 1024]
                for text, pred in zip(chunk, self.classify(chunk)):
                    f.write(json.dumps({"text": text, **pred}, ensure_ascii=False) + "\n")
                    n += 1
        return n


def _check_texts(texts) -> None:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise ValueError("texts must be a list of strings")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}] is {type(t).__name__}, not a string")
        if not t.strip():
            raise ValueError(f"texts[{i}] is empty; there is nothing to classify")


class EnsemblePipeline(ClassifierPipeline):
    """Several trained classifiers in one run: the weighted mean of their (each calibrated) class
    probabilities p; with validation data at `ensemble --val`, one more temperature on log p."""

    def __init__(self, members: list[ClassifierPipeline], weights: list[float], meta: dict[str, Any]):
        self.members, self.weights = members, weights
        self.labels, self.meta, self.rt = members[0].labels, meta, members[0].rt
        self.featurizer = members[0].featurizer
        self.temperature = classify.temperature(meta)

    @classmethod
    def from_tensors(cls, tensors, meta, rt) -> EnsemblePipeline:
        members = []
        for i, member_meta in enumerate(meta["ensemble"]["members"]):
            p = f"module.member{i}."
            members.append(ClassifierPipeline.from_state({k[len(p):]: v for k, v in tensors.items()
                                                          if k.startswith(p)}, member_meta, rt))
        return cls(members, meta["ensemble"]["weights"], meta)

    def scores(self, texts: list[str]) -> torch.Tensor:
        """log of the members' weighted mean probabilities (N, K): softmax of it / T is the output."""
        p = sum(w * m.predict_proba(texts) for w, m in zip(self.weights, self.members))
        return torch.from_numpy(np.log(np.clip(p, 1e-12, 1.0)))

    def predict_proba(self, texts: list[str], calibrated: bool = True) -> np.ndarray:
        if calibrated and self.temperature != 1.0:
            return super().predict_proba(texts)
        return sum(w * m.predict_proba(texts) for w, m in zip(self.weights, self.members))


def ensemble(runs: list[str], out: str, weights: list[float] | None = None, val_path: str | None = None) -> RunDir:
    """Write one classifier run holding `runs` (same labels), averaged with `weights` (default equal).
    With `val_path` (labelled validation texts, never test data) a temperature is fitted on the combined
    probabilities; without, they stay as combined (each member applies its own temperature)."""
    if len(runs) < 2:
        raise ValueError("an ensemble needs at least two runs")
    weights = list(weights) if weights else [1.0] * len(runs)
    if len(weights) != len(runs) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"--weights: {len(runs)} non-negative numbers expected, got {weights}")
    weights = [w / sum(weights) for w in weights]
    tensors, members = {}, []
    for i, r in enumerate(runs):
        t, meta = checkpoint.load(find_checkpoint(r))
        if meta.get("family") != FAMILY or "ensemble" in meta:
            raise ValueError(f"{r}: not a single classifier run")
        if members and meta["labels"] != members[0]["labels"]:
            raise ValueError(f"{r}: labels {meta['labels']} differ from {runs[0]}'s {members[0]['labels']}")
        members.append({k: v for k, v in meta.items() if k not in ("format", "genforge_version", "aliases", "resume")})
        p = "module.model."
        tensors.update({f"module.member{i}.{k[len(p):]}": v for k, v in t.items() if k.startswith(p)})
    info = {"members": members, "weights": weights, "runs": [str(r) for r in runs]}
    meta = {"family": FAMILY, "labels": members[0]["labels"], "config": members[0]["config"], "ensemble": info}
    if val_path:
        d = members[0]["config"]["data"]
        val = read_labelled(val_path, d["text_field"], d["label_field"], d.get("errors", "strict"))
        pipe = EnsemblePipeline.from_tensors(tensors, meta, make_runtime("auto", "fp32"))
        logits, y = pipe.scores(val.texts), torch.from_numpy(encode_labels(val, pipe.labels))
        t = calibration.fit_temperature(logits, y)
        meta["calibration"] = {"method": "temperature", "temperature": t, "fitted_on": str(val_path), "n": len(y),
                               "val_nll": calibration.nll(logits, y), "val_nll_calibrated": calibration.nll(logits, y, t)}
        print(f"genforge: ensemble calibrated on {len(y):,} texts of {val_path}: temperature {t:.3f}", file=sys.stderr)
    else:
        print("genforge: no --val data: the ensemble's combined probabilities are not calibrated again "
              "(each member applies its own temperature)", file=sys.stderr)
    run = RunDir(out)
    run.create(resume=False)
    checkpoint.save(run.checkpoint("best"), tensors, meta)
    run.write_json("config.json", {"family": FAMILY, "ensemble": {"runs": info["runs"], "weights": weights},
                                   "labels": members[0]["labels"]})
    return run


def pipeline_from_checkpoint(path, device: str = "auto", dtype: str = "fp32") -> ClassifierPipeline:
    return ClassifierPipeline.from_checkpoint(path, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- CLI and server answers


def next_steps(run: Path) -> list[str]:
    return [f"genforge classify {run} \"...\"", f"genforge eval {run} --data FILE"]


def sample_command(pipe: ClassifierPipeline, args: argparse.Namespace) -> int:
    raise ValueError(f"{args.run}: sampling a {FAMILY!r} run from the CLI is not supported yet")


def eval_command(args: argparse.Namespace) -> int:
    """`genforge eval RUN --data FILE`: every metric as JSON; metrics.json, roc.png, confusion.png in
    RUN/eval/<data name>/."""
    base.require_eval_data(args)
    pipe = ClassifierPipeline.from_checkpoint(args.run, device=args.device)
    run = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent.parent
    out = run / "eval" / (Path(args.data).name.split(".")[0] or "data")
    metrics = pipe.evaluate(args.data, errors=args.errors, text_field=args.text_field,
                            label_field=args.label_field, out=out)
    print(json.dumps(metrics, indent=2))
    print(f"genforge: metrics.json, roc.png and confusion.png are in {out}", file=sys.stderr)
    return 0


def model_info(pipe: ClassifierPipeline) -> dict[str, Any]:
    return {"labels": list(pipe.labels)}
