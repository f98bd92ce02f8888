"""The GPT family: train, fine-tune, evaluate and sample decoder-only language models.

    genforge train gpt --data input.txt [--preset small] [--model.n_layer=4 ...]
    genforge train gpt --init-from RUN|hf:DIR --data other.txt     # fine-tune
    genforge sample RUN --prompt "ROMEO:"    genforge eval RUN --data FILE
    genforge train gpt --data reviews.jsonl --data.label_field=label   # label-conditioned
    genforge sample RUN --label pos --num-samples 3

`train()` resolves the config, builds tokenizer, token cache, model and optimizers, and hands a
`GPTTask` to the shared Trainer through `base.launch`. `GPTPipeline` rebuilds everything from a
checkpoint alone; a label-conditioned run (docs/label-conditioned-gpt.md) samples a label's texts
with `generate_labelled`. `sample_command`, `eval_command`, `next_steps` and `model_info` are the family's
answers to the CLI and the server (the `base.Family` contract).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from .. import checkpoint, config
from ..data.text import TokenSplit, check_corpus, corpus_labels, encode_corpus, iter_corpus, split_tokens
from ..data.tokenizers import LabelledTokenizer, StreamDecoder, Tokenizer, tokenizer_from_dict, train_tokenizer
from ..models.gpt import GPT, GPTConfig, check_sampling
from ..run import RunDir
from ..runtime import Runtime, make_runtime
from ..trainer import Result, Trainer, TrainConfig
from . import base

FAMILY = "gpt"
DESCRIPTION = "decoder-only language models (train, fine-tune, sample, evaluate)"
METRICS = {"val_loss": "validation loss"}


@dataclass
class TextDataConfig:
    path: str = ""  # .txt file, folder of .txt files, or .jsonl file
    tokenizer: Literal["char", "bpe"] = "char"
    vocab_size: int = 2048  # BPE vocabulary size (char vocabularies are sized by the corpus)
    val_fraction: float = 0.1  # the last fraction of the corpus is held out for validation
    text_field: str = "text"  # JSONL field holding the text
    errors: Literal["strict", "replace"] = "strict"  # invalid UTF-8: fail (with byte offset) or replace
    label_field: str = ""  # JSONL field of a class label: each row trains as [label token][text][end token]

    def validate(self):
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")


def sections() -> dict[str, Any]:
    return {"model": GPTConfig(), "data": TextDataConfig(),
            "train": TrainConfig(max_iters=2000, batch_size=32, lr=2e-3, min_lr=2e-4, warmup_iters=50,
                                 eval_interval=250)}


# Named presets: partial configs applied over the defaults above.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # fast CPU default: trains a useful character model in a couple of minutes
    "small": {},
    # tuned for time-to-quality on a CPU (benchmarks/gpt_train.py): bf16, rotary, QK-norm, Muon, high LR
    "fast": {
        "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "activation": "gelu"},
        "train": {"batch_size": 32, "lr": 4e-3, "min_lr": 4e-4, "warmup_iters": 30, "max_iters": 1000,
                  "optimizer": "muon", "muon_lr": 0.02, "dtype": "auto"},
    },
    # the best validation loss in a 10-minute CPU budget (benchmarks/gpt_train.py, BENCHMARKS.md):
    # width 192, context 256, light residual dropout (none on attention weights), Muon with weight decay,
    # LR decayed linearly to zero over the time budget (time-based, so not bit-reproducible)
    "quality": {
        "model": {"n_layer": 4, "n_head": 6, "n_embd": 192, "block_size": 256, "activation": "relu2",
                  "dropout": 0.05, "attn_dropout": 0.0},
        "train": {"batch_size": 16, "lr": 4e-3, "min_lr": 0.0, "warmup_iters": 100, "schedule": "linear",
                  "max_iters": 10**7, "max_seconds": 600.0, "time_schedule": True,
                  "optimizer": "muon", "muon_lr": 0.02, "muon_weight_decay": 0.2, "dtype": "auto"},
    },
    # article 001: vocab 10000, d_model 512, 8 heads, 2 layers, learned positions, LayerNorm
    "article001": {
        "model": {"n_layer": 2, "n_head": 8, "n_embd": 512, "block_size": 128, "pos": "learned",
                  "norm": "layernorm", "qk_norm": False, "activation": "gelu", "tie_weights": False,
                  "bias": True, "dropout": 0.1},
        "data": {"tokenizer": "bpe", "vocab_size": 10000},
        "train": {"lr": 3e-4, "min_lr": 3e-5, "batch_size": 32, "weight_decay": 0.01},
    },
    # nanoGPT's CPU "baby GPT" on characters: the reference the benchmarks compare against
    "baby": {
        "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "pos": "learned",
                  "norm": "layernorm", "qk_norm": False, "activation": "gelu", "tie_weights": True,
                  "bias": False, "dropout": 0.0},
        "train": {"batch_size": 12, "max_iters": 2000, "lr": 1e-3, "min_lr": 1e-4, "warmup_iters": 100,
                  "beta2": 0.99, "weight_decay": 0.1, "dtype": "fp32", "eval_interval": 250},
    },
    # GPT-2 small (124M) architecture, for training from scratch on a GPU
    "gpt2": {
        "model": {"n_layer": 12, "n_head": 12, "n_embd": 768, "block_size": 1024, "pos": "learned",
                  "norm": "layernorm", "qk_norm": False, "activation": "gelu_tanh", "bias": True},
        "data": {"tokenizer": "bpe", "vocab_size": 50257},
        "train": {"lr": 6e-4, "min_lr": 6e-5, "batch_size": 8, "grad_accum": 8, "warmup_iters": 700},
    },
}
# Fine-tuning may change only these model fields; the rest is fixed by the pre-trained weights.
FINETUNE_MODEL_KEYS = ("dropout", "attn_dropout", "attention")


# ----------------------------------------------------------------------------- task


def param_groups(model: GPT, cfg: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """AdamW (decay on matrices, none on norms/biases); with optimizer=muon, Muon on block matrices."""
    decay, no_decay, hidden = [], [], []
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if p.dim() < 2:
            no_decay.append(p)
        elif cfg.optimizer == "muon" and name.startswith("h."):
            hidden.append(p)
        else:
            decay.append(p)
    adamw = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}],
                              lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=False)
    opts: dict[str, torch.optim.Optimizer] = {"adamw": adamw}
    if hidden:
        opts["muon"] = torch.optim.Muon(hidden, lr=cfg.muon_lr, weight_decay=cfg.muon_weight_decay, momentum=0.95)
    return opts


class GPTTask(base.IntervalLosses):
    item_name = "tok"
    select_metric = "val_loss"
    shardable = True  # training calls only trainer.module("model"): --train.distributed=fsdp shards it

    def __init__(self, model: GPT, train: TokenSplit, val: TokenSplit | None, tokenizer: Tokenizer,
                 cfg: dict[str, Any], runtime: Runtime, run: RunDir):
        self.model, self.train_split, self.val_split = model, train, val
        self.tokenizer, self.cfg, self.rt, self.run = tokenizer, cfg, runtime, run
        tc: TrainConfig = cfg["train"]
        self.modules = {"model": model}
        self.optimizers = param_groups(model, tc)
        self.items_per_step = tc.batch_size * tc.grad_accum * model.config.block_size
        if val is None:
            self.select_metric = None
        self._recent: list[float] = []

    def bind(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def _loss(self):
        x, y = self.train_split.batch(self.cfg["train"].batch_size, self.trainer.generator,
                                      self.trainer.shares)
        _, loss = self.trainer.module("model")(self.rt.to_device(x), self.rt.to_device(y))
        self._recent.append(loss.item())
        return loss, {"loss": self._recent[-1]}

    def phases(self, step):
        return [(tuple(self.optimizers), self._loss)]

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        out = base.train_loss(self._recent)
        if self.val_split is not None:
            n = self.cfg["train"].eval_iters
            out.update(evaluate_split(self.model, self.val_split, self.rt, self.cfg["train"].batch_size,
                                      max_batches=n or None, seed=self.cfg["train"].seed))
        return out

    def on_eval(self, step, monitor):
        if not self.cfg["train"].samples or not self.rt.is_main:
            return
        g = torch.Generator(device=self.rt.device).manual_seed(step)
        start = torch.tensor([[self.tokenizer.eot_id if self.tokenizer.eot_id is not None else 0]],
                             device=self.rt.device)
        with self.rt.autocast():
            ids = self.model.generate(start, 200, temperature=0.8, top_k=50, generator=g)
        text = self.tokenizer.decode(ids[0, 1:].tolist())
        monitor.text("sample", text, step)
        (self.run.file("samples") / f"step{step:06d}.txt").write_text(text)

    def meta(self) -> dict[str, Any]:
        labels = {"labels": self.tokenizer.labels} if isinstance(self.tokenizer, LabelledTokenizer) else {}
        return {"family": FAMILY, "config": config.to_dict(self.cfg), "tokenizer": self.tokenizer.to_dict(), **labels}


@torch.no_grad()
def evaluate_split(model: GPT, split: TokenSplit, rt: Runtime, batch_size: int,
                   max_batches: int | None = None, seed: int = 0) -> dict[str, float]:
    """Mean token loss over the split (whole split by default), perplexity."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    if max_batches:
        g = torch.Generator().manual_seed(seed)
        batches = (split.batch(batch_size, g) for _ in range(max_batches))
    else:
        batches = split.windows(batch_size * 4)
    for x, y in batches:
        with rt.autocast():
            logits, _ = model(x.to(rt.device))
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.to(rt.device).flatten(),
                                                 ignore_index=-1, reduction="sum")
        total += loss.item()
        count += int((y >= 0).sum())
    model.train(was)
    mean = total / max(count, 1)
    return {"val_loss": mean, "val_ppl": math.exp(min(mean, 50.0)), "val_tokens": float(count)}


# ----------------------------------------------------------------------------- training


def _init_source(init_from: str) -> tuple[GPTConfig, dict[str, torch.Tensor], Tokenizer, str]:
    """Pre-trained config, weights and tokenizer from a genforge run or hf:DIR."""
    if init_from.startswith("hf:"):
        from ..hf import load_gpt2
        cfg, state, tok = load_gpt2(init_from[3:])
        return cfg, state, tok, init_from
    tensors, meta, ckpt = base.load_run(init_from, FAMILY, prefix="module.model", what=f"--init-from {init_from}")
    cfg = config.from_dict(GPTConfig, meta["config"]["model"], "model")
    return cfg, tensors, tokenizer_from_dict(meta["tokenizer"]), str(ckpt)


def with_labels(tokenizer: Tokenizer, labels: list[str]) -> LabelledTokenizer:
    """The tokenizer with label tokens; an already labelled one keeps its labels' ids and adds the new ones."""
    if isinstance(tokenizer, LabelledTokenizer):
        return LabelledTokenizer(tokenizer.base, tokenizer.labels + [x for x in labels if x not in tokenizer.labels])
    return LabelledTokenizer(tokenizer, labels)


def grow_vocab(state: dict[str, torch.Tensor], model: GPT, end_from: int | None = None) -> dict[str, torch.Tensor]:
    """--init-from a run with fewer tokens (a plain run, trained now with labels): the embedding and the head
    gain rows for the new special tokens, initialised as the model initialised its own. end_from: the plain
    run's end-of-text id (BPE); the first new row, the end-of-document token, starts as a copy of it, so what
    pre-training learned about where a text ends carries over."""
    own = model.state_dict()
    for k in ("wte.weight", "lm_head.weight"):
        if k in state and len(state[k]) < len(own[k]):
            new = own[k][len(state[k]):].clone()  # (V_new - V, C)
            if end_from is not None:
                new[0] = state[k][end_from]
            state[k] = torch.cat([state[k], new])  # (V_new, C)
    return state


def train(preset: str | None = None, overrides: dict | None = None, out: str | None = None,
          resume: bool = False, init_from: str | None = None, progress: bool = True) -> tuple[RunDir, Result]:
    """Train (or fine-tune, or resume) a GPT; returns the run directory and the result."""
    overrides = overrides or {}
    run = base.run_dir(out, FAMILY)
    cfg = base.resolve(sections(), PRESETS, preset, overrides, run, resume)
    init_from = None if resume else init_from
    data: TextDataConfig = cfg["data"]
    if not data.path:
        raise ValueError("no training data: pass --data FILE (a .txt file, a folder of .txt, or .jsonl)")

    def build(rt: Runtime) -> base.Build:
        data: TextDataConfig = cfg["data"]
        check_corpus(data.path, data.text_field, data.errors)
        init_state = None
        if init_from:
            init_cfg, init_state, tokenizer, source = _init_source(init_from)
            bad = [k for k in overrides.get("model", {}) if k not in FINETUNE_MODEL_KEYS]
            if bad:
                raise config.ConfigError(f"--model.{bad[0]} cannot change when fine-tuning from {init_from}: "
                                         f"the architecture comes from the pre-trained model (only "
                                         f"{', '.join(FINETUNE_MODEL_KEYS)} may change)")
            cfg["model"] = config.update(init_cfg, overrides.get("model", {}), "model")
            data = cfg["data"] = dataclasses.replace(data, tokenizer=tokenizer.kind)
        elif resume:
            tokenizer = tokenizer_from_dict(run.read_json("tokenizer.json"))
        else:
            tokenizer = train_tokenizer(data.tokenizer,
                                        lambda: (c for c in iter_corpus(data.path, data.text_field, data.errors)),
                                        data.vocab_size)
        plain_end = None if isinstance(tokenizer, LabelledTokenizer) else tokenizer.eot_id
        if data.label_field and not resume:
            tokenizer = with_labels(tokenizer, corpus_labels(data.path, data.text_field, data.label_field, data.errors))
        cfg["model"] = dataclasses.replace(cfg["model"], vocab_size=tokenizer.vocab_size)
        tokens = encode_corpus(data.path, tokenizer, data.text_field, data.errors, progress=progress,
                               label_field=data.label_field or None)
        train_split, val_split = split_tokens(tokens, data.val_fraction, cfg["model"].block_size)
        model = GPT(cfg["model"])
        if init_state is not None:
            checkpoint.load_module(model, grow_vocab(init_state, model, plain_end), source)
        banner = (f"GPT with {model.num_params() / 1e6:.2f}M parameters, vocab {tokenizer.vocab_size} "
                  f"({tokenizer.kind}), {len(train_split.tokens):,} train / "
                  f"{len(val_split.tokens) if val_split else 0:,} val tokens, device {rt.device}, "
                  f"{str(rt.dtype).removeprefix('torch.')}")
        return base.Build(GPTTask(model, train_split, val_split, tokenizer, cfg, rt, run), banner,
                          config={"init_from": init_from, "preset": preset},
                          files={"tokenizer.json": tokenizer.to_dict()})

    return run, base.launch(FAMILY, cfg, run, build, resume, progress)


# ----------------------------------------------------------------------------- inference


class GPTPipeline:
    """A trained GPT with its tokenizer: `generate(text)`, `stream(text)`, `evaluate(file)`."""

    family = FAMILY

    def __init__(self, model: GPT, tokenizer: Tokenizer, meta: dict[str, Any], runtime: Runtime):
        self.model, self.tokenizer, self.meta, self.rt = model, tokenizer, meta, runtime

    @classmethod
    def from_checkpoint(cls, path, device: str = "auto", dtype: str = "fp32") -> GPTPipeline:
        if str(path).startswith("hf:"):
            from ..hf import load_gpt2
            cfg, state, tok = load_gpt2(str(path)[3:])
            meta = {"family": FAMILY, "config": {"model": dataclasses.asdict(cfg)}, "step": 0}
        else:
            state, meta, _ = base.load_run(path, FAMILY, prefix="module.model")
            cfg = config.from_dict(GPTConfig, meta["config"]["model"], "model")
            tok = tokenizer_from_dict(meta["tokenizer"])
        rt = make_runtime(device, dtype)
        model = GPT(cfg)
        checkpoint.load_module(model, state)
        model.to(rt.device).eval()
        return cls(model, tok, meta, rt)

    @property
    def context_length(self) -> int:
        return self.model.config.block_size

    @property
    def labels(self) -> list[str]:
        """The class labels of a label-conditioned run; [] for a plain GPT."""
        return self.tokenizer.labels if isinstance(self.tokenizer, LabelledTokenizer) else []

    def labelled_ids(self, label: str, n: int, max_new_tokens: int, temperature: float = 0.8,
                     top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> list[list[int]]:
        """Token ids of n sampled documents of `label`: [label token, text..., end token] (no end token when
        max_new_tokens ran out). Sampling follows [end][label], a document's start in the training stream, and
        label tokens are masked out of every sampled position, as is a BPE base's own end-of-text (never in a
        labelled document: a run pre-trained on plain text would otherwise write it into a sample)."""
        label = str(label)
        if label not in self.labels:
            known = (f"this run's labels are {', '.join(map(repr, self.labels))}" if self.labels else
                     "this GPT run has no labels (train it with --data.label_field)")
            raise ValueError(f"label {label!r}: {known}")
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        check_sampling(max_new_tokens, temperature, top_k, top_p)
        end, first = self.tokenizer.eot_id, self.tokenizer.label_ids[label]
        allowed = torch.arange(self.tokenizer.vocab_size) <= end  # text tokens and the end token; labels come after
        if self.tokenizer.base.eot_id is not None:
            allowed[self.tokenizer.base.eot_id] = False
        gen = torch.Generator(device=self.rt.device)
        gen.manual_seed(seed if seed is not None else torch.seed())
        idx = torch.tensor([[end, first]] * n, device=self.rt.device)  # (n, 2)
        docs = [[first] for _ in range(n)]
        with self.rt.autocast():
            for nxt in self.model.stream(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                                         generator=gen, logits_processor=allowed):
                for doc, t in zip(docs, nxt.tolist()):
                    if doc[-1] != end:
                        doc.append(t)
                if all(doc[-1] == end for doc in docs):
                    break
        return docs

    def generate_labelled(self, label: str, n: int, max_new_tokens: int, temperature: float = 0.8,
                          top_k: int | None = None, top_p: float | None = None, seed: int | None = None) -> list[str]:
        """n texts of `label`, without the label and end tokens; an unknown label is a ValueError."""
        docs = self.labelled_ids(label, n, max_new_tokens, temperature, top_k, top_p, seed)
        end = self.tokenizer.eot_id
        return [self.tokenizer.decode(d[1:-1] if d[-1] == end else d[1:]) for d in docs]

    def encode_prompt(self, prompt: str) -> list[int]:
        ids = self.tokenizer.encode(prompt, where="prompt")
        if not ids:  # an empty prompt starts from end-of-text, or a newline in char vocabularies
            eot = self.tokenizer.eot_id
            ids = [eot] if eot is not None else [self.tokenizer.stoi.get("\n", 0)]
        return ids

    def stream(self, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
               top_k: int | None = 50, top_p: float | None = None, seed: int | None = None,
               num_samples: int = 1) -> Iterator[list[str]]:
        """Yield, per step, the new text piece of each of `num_samples` samples."""
        check_sampling(max_new_tokens, temperature, top_k, top_p)
        ids = self.encode_prompt(prompt)
        idx = torch.tensor([ids] * num_samples, device=self.rt.device)
        gen = torch.Generator(device=self.rt.device)
        gen.manual_seed(seed if seed is not None else torch.seed())
        decoders = [StreamDecoder(self.tokenizer) for _ in range(num_samples)]
        with self.rt.autocast():
            for nxt in self.model.stream(idx, max_new_tokens, temperature=temperature, top_k=top_k,
                                         top_p=top_p, generator=gen):
                yield [d.push([t]) for d, t in zip(decoders, nxt.tolist())]

    def generate(self, prompt: str, max_new_tokens: int = 200, num_samples: int | None = None, **kw):
        """Prompt + continuation; a list of strings when num_samples is given."""
        n = num_samples or 1
        texts = [prompt] * n
        for pieces in self.stream(prompt, max_new_tokens, num_samples=n, **kw):
            texts = [t + p for t, p in zip(texts, pieces)]
        return texts if num_samples else texts[0]

    def evaluate(self, path: str, batch_size: int = 32, errors: str = "strict", text_field: str = "text") -> dict:
        """Loss, perplexity and bits per character / byte over the whole file (a labelled run's file needs its
        label field: the documents are laid out as in training)."""
        check_corpus(path, text_field, errors)
        label_field = self.meta["config"]["data"].get("label_field") if self.labels else None
        tokens = encode_corpus(path, self.tokenizer, text_field, errors, progress=False, label_field=label_field)
        split = TokenSplit(tokens, self.model.config.block_size, "evaluation")
        res = evaluate_split(self.model, split, self.rt, batch_size)
        text = self.tokenizer.decode(int(t) for t in tokens[1:])  # the predicted tokens
        nats = res["val_loss"] * res["val_tokens"]
        return {"loss": res["val_loss"], "perplexity": res["val_ppl"], "tokens": int(res["val_tokens"]),
                "bits_per_char": nats / math.log(2) / max(len(text), 1),
                "bits_per_byte": nats / math.log(2) / max(len(text.encode("utf-8")), 1)}


def pipeline_from_checkpoint(path, device: str = "auto", dtype: str = "fp32") -> GPTPipeline:
    return GPTPipeline.from_checkpoint(path, device=device, dtype=dtype)


# ----------------------------------------------------------------------------- CLI and server answers


def next_steps(run: Path) -> list[str]:
    return [f"genforge sample {run} --prompt \"...\"", f"genforge eval {run} --data FILE"]


def sample_command(pipe: GPTPipeline, args: argparse.Namespace) -> int:
    """`genforge sample RUN`: each sample streamed to stdout after its prompt; with --label, a labelled
    run's texts of that label, one after another."""
    if args.label is not None:
        if args.prompt:
            raise ValueError("--label with --prompt: a labelled sample starts from its label token; give one of them")
        texts = pipe.generate_labelled(args.label, args.num_samples, args.max_new_tokens, args.temperature,
                                       args.top_k, args.top_p, args.seed)
        for i, text in enumerate(texts):
            print(f"--- sample {i + 1}/{len(texts)} (label {args.label})\n{text}")
        return 0
    kw = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
              top_p=args.top_p, seed=args.seed)
    check_sampling(args.max_new_tokens, args.temperature, args.top_k, args.top_p)
    pipe.encode_prompt(args.prompt)  # fail on a bad prompt before printing anything
    for i in range(args.num_samples):
        if args.num_samples > 1:
            print(f"--- sample {i + 1}/{args.num_samples}", flush=True)
        sys.stdout.write(args.prompt)
        seed = None if args.seed is None else args.seed + i
        for pieces in pipe.stream(args.prompt, **{**kw, "seed": seed}):
            sys.stdout.write(pieces[0])
            sys.stdout.flush()
        sys.stdout.write("\n")
    return 0


def eval_command(args: argparse.Namespace) -> int:
    """`genforge eval RUN --data FILE`: loss, perplexity, bits per character and byte, as JSON."""
    base.require_eval_data(args)
    pipe = GPTPipeline.from_checkpoint(args.run, device=args.device)
    kw = {"text_field": args.text_field} if args.text_field else {}
    print(json.dumps(pipe.evaluate(args.data, errors=args.errors, **kw), indent=2))
    return 0


def model_info(pipe: GPTPipeline) -> dict[str, Any]:
    return {"context_length": pipe.context_length, **({"labels": pipe.labels} if pipe.labels else {})}
