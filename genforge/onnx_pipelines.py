"""The torch-free runtime: pipelines over a `genforge export` directory, on onnxruntime and numpy.

    genforge sample DIR --backend onnx --prompt "ROMEO:"      # DIR = an export, or a run exported to RUN/onnx
    from genforge.onnx_pipelines import load
    load("runs/gpt-.../onnx").generate("ROMEO:", max_new_tokens=100)

Imports numpy, onnxruntime, `tokenizers` and genforge's torch-free modules only (the tokenizers, the
word splitter, the image grid), never torch, so a device without torch runs an export
(tests/test_export.py blocks `import torch` to prove it). What each export holds is described by its
manifest, DIR/genforge_export.json (written by genforge/export.py):
- GPT: a KV-cached decoder (onnxruntime-genai's input and output names), sampled here with the torch
  sampler's semantics (greedy at temperature 0, top-k, top-p, the context restart from its newest half);
- GAN: the generator, z (B, z_dim) [, labels (B,)] -> images (B, C, H, W) in [-1, 1]; latents are drawn
  with numpy's generator, so a seed gives other images than the torch pipeline's (same z, same image);
- classifier: the model on (input_ids (B, T), lengths (B,)); its featurizer (words, char or BPE ids,
  padding and truncation) re-implemented here from the exported JSON, the temperature applied here.
The image families' pipelines (vqvae, text2image, captiongan, imageclf) live in genforge/onnx_images.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .config import check_sampling
from .data.tokenizers import StreamDecoder, tokenizer_from_dict

MANIFEST = "genforge_export.json"
FORMAT = "genforge-onnx/1"


def find_export(path: str | Path) -> Path:
    """An export directory, or a run directory whose export is in RUN/onnx."""
    p = Path(path)
    for d in (p, p / "onnx"):
        if (d / MANIFEST).is_file():
            return d
    raise FileNotFoundError(f"{p}: no {MANIFEST} here or in {p / 'onnx'} (make one with: genforge export {p} "
                            "--format onnx)")


def read_manifest(path: str | Path) -> tuple[Path, dict[str, Any]]:
    d = find_export(path)
    try:
        manifest = json.loads((d / MANIFEST).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{d / MANIFEST}: not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{d / MANIFEST}: format is not {FORMAT!r}")
    return d, manifest


def require(*modules: str) -> None:
    """A clear error when the optional `export` dependencies are missing."""
    import importlib.util
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"{', '.join(missing)} not installed: pip install 'genforge[export]'")


def session(path: Path, threads: int = 1):
    require("onnxruntime")
    import onnxruntime as ort
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the ONNX file named in {MANIFEST} is missing")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def load(path: str | Path, model: str | None = None, threads: int = 1):
    """The pipeline of the export at `path`; `model` picks another ONNX file of it (e.g. the fp32 one)."""
    d, manifest = read_manifest(path)
    from .onnx_images import IMAGE_PIPELINES
    cls = {"gpt": OnnxGPTPipeline, "gan": OnnxGANPipeline, "classifier": OnnxClassifierPipeline,
           **IMAGE_PIPELINES}.get(manifest["family"])
    if cls is None:
        raise ValueError(f"{d / MANIFEST}: family {manifest['family']!r} has no ONNX runtime")
    return cls(d, manifest, session(d / (model or manifest["model"]), threads))

# ----------------------------------------------------------------------------- GPT


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sample_next(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None,
                rng: np.random.Generator) -> np.ndarray:
    """logits (B, V) -> token ids (B,): greedy below temperature 1e-6; the top token always survives top-p."""
    if temperature < 1e-6:
        return logits.argmax(-1)
    logits = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = np.sort(logits, -1)[:, -top_k][:, None]  # (B, 1)
        logits = np.where(logits < kth, -np.inf, logits)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-logits, -1, kind="stable")
        probs = softmax(np.take_along_axis(logits, order, -1))
        drop = probs.cumsum(-1) - probs >= top_p
        drop[:, 0] = False
        np.put_along_axis(logits, order, np.where(drop, -np.inf, np.take_along_axis(logits, order, -1)), -1)
    cdf = softmax(logits).cumsum(-1)  # (B, V)
    u = rng.random((len(cdf), 1)) * cdf[:, -1:]
    return (cdf <= u).sum(-1).clip(max=cdf.shape[-1] - 1)


class OnnxGPTPipeline:
    """An exported GPT: `generate(prompt)`, `stream(prompt)`, `logits(ids)` (no cache)."""

    family = "gpt"

    def __init__(self, path: Path, manifest: dict[str, Any], sess):
        self.path, self.meta, self.sess = path, manifest, sess
        self.tokenizer = tokenizer_from_dict(manifest["tokenizer"])
        self.context_length, self.n_layer = manifest["context_length"], manifest["n_layer"]
        self.n_head, self.head_size = manifest["n_head"], manifest["head_size"]
        self.vocab_size = manifest["vocab_size"]
        self.labels: list[str] = []  # the model list's labels: an export does not carry a conditioned GPT's

    def empty_past(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, self.n_head, 0, self.head_size), np.float32)] * (2 * self.n_layer)

    def forward(self, ids: np.ndarray, past: list[np.ndarray], start: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """ids (B, T) at positions start.. after `past` -> (logits (B, T, V), presents)."""
        B, T = ids.shape
        positions = np.broadcast_to(np.arange(start, start + T, dtype=np.int64), (B, T))
        return self.run(ids, np.ones((B, start + T), np.int64), positions, past)

    def run(self, ids: np.ndarray, mask: np.ndarray, positions: np.ndarray,
            past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One decoder call: ids (B, T), mask (B, P + T) (0 = a past key no query sees), positions (B, T),
        past (B, nh, P, hs) per layer's keys then values -> (logits (B, T, V), presents (B, nh, P + T, hs))."""
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64),
                "position_ids": np.ascontiguousarray(positions, np.int64)}
        for i in range(self.n_layer):
            feed[f"past_key_values.{i}.key"], feed[f"past_key_values.{i}.value"] = past[2 * i], past[2 * i + 1]
        out = self.sess.run(None, feed)
        return out[0], out[1:]

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """ids (B, T) -> logits (B, T, V) without a cache (T <= context_length)."""
        return self.forward(ids, self.empty_past(len(ids)), 0)[0]

    def encode_prompt(self, prompt: str) -> list[int]:
        ids = self.tokenizer.encode(prompt, where="prompt")
        if not ids:  # as the torch pipeline: end-of-text, or a newline in char vocabularies
            eot = self.tokenizer.eot_id
            ids = [eot] if eot is not None else [self.tokenizer.stoi.get("\n", 0)]
        return ids

    def tokens(self, ids: list[int], max_new_tokens: int, temperature: float = 0.8, top_k: int | None = 50,
               top_p: float | None = None, seed: int | None = None, num_samples: int = 1) -> Iterator[np.ndarray]:
        """Yield (num_samples,) new token ids per step; a full context restarts from its newest half."""
        check_sampling(max_new_tokens, temperature, top_k, top_p)
        rng, n_ctx = np.random.default_rng(seed), self.context_length
        hist = np.array([ids[-n_ctx:]] * num_samples, np.int64)  # (B, T): the tokens the cache holds, and the next
        logits, past = self.forward(hist, self.empty_past(num_samples), 0)
        pos = hist.shape[1]
        for _ in range(max_new_tokens):
            nxt = sample_next(logits[:, -1], temperature, top_k, top_p, rng)  # (B,)
            yield nxt
            hist = np.concatenate([hist, nxt[:, None]], 1)
            if pos >= n_ctx:
                hist = hist[:, -(n_ctx // 2):]
                logits, past = self.forward(hist, self.empty_past(num_samples), 0)
                pos = hist.shape[1]
            else:
                logits, past = self.forward(nxt[:, None], past, pos)
                pos += 1

    def stream(self, prompt: str, max_new_tokens: int = 200, num_samples: int = 1, **kw) -> Iterator[list[str]]:
        """Yield, per step, the new text piece of each sample."""
        decoders = [StreamDecoder(self.tokenizer) for _ in range(num_samples)]
        for nxt in self.tokens(self.encode_prompt(prompt), max_new_tokens, num_samples=num_samples, **kw):
            yield [d.push([int(t)]) for d, t in zip(decoders, nxt)]

    def generate(self, prompt: str, max_new_tokens: int = 200, **kw) -> str:
        return prompt + "".join(p[0] for p in self.stream(prompt, max_new_tokens, **kw))


class DecoderSlots:
    """The model side of genforge/engine.py's batching engine (GPTSlots' interface) over an exported
    decoder, in numpy: keys and values (2 * n_layer, S, nh, context, hs), one slot per sequence.

    `forward(idx, start, rows)` runs tokens idx (B, T) of the slots `rows`, row b at positions start[b]..;
    the rows' caches go in as one past of P = max(start) positions, and the attention mask hides each
    row's positions start[b]..P-1 (another row's length), so rows at different lengths share a call.
    Returns the logits of each row's last token (B, V) and writes the new keys into the slots."""

    def __init__(self, pipe: OnnxGPTPipeline):
        self.pipe, self.block_size, self.vocab_size = pipe, pipe.context_length, pipe.vocab_size
        self.capacity, self.kv = 0, None

    def reserve(self, slots: int) -> None:
        if slots <= self.capacity:
            return
        p, new = self.pipe, max(slots, 2 * self.capacity)
        kv = np.zeros((2 * p.n_layer, new, p.n_head, self.block_size, p.head_size), np.float32)
        if self.capacity:
            kv[:, :self.capacity] = self.kv
        self.kv, self.capacity = kv, new

    def move(self, src: int, dst: int, length: int) -> None:
        self.kv[:, dst, :, :length] = self.kv[:, src, :, :length]

    def forward(self, idx: np.ndarray, start: np.ndarray | list[int], rows: slice) -> np.ndarray:
        idx, start = np.asarray(idx, np.int64), np.asarray(start, np.int64)
        (B, T), P = idx.shape, int(start.max())
        mask = np.concatenate([np.arange(P)[None] < start[:, None], np.ones((B, T), bool)], 1)  # (B, P + T)
        positions = start[:, None] + np.arange(T)[None]  # (B, T)
        past = [np.ascontiguousarray(x) for x in self.kv[:, rows, :, :P]]  # (B, nh, P, hs) per layer's k, v
        logits, presents = self.pipe.run(idx, mask, positions, past)
        new = np.stack(presents)[..., P:, :]  # (2 * n_layer, B, nh, T, hs): the keys and values of idx
        for b in range(B):
            self.kv[:, rows.start + b, :, start[b]:start[b] + T] = new[:, b]
        return logits[:, -1]  # (B, V)

# ----------------------------------------------------------------------------- GAN


class OnnxGANPipeline:
    """An exported generator: `generate(n, seed, labels, z)` -> uint8 (n, H, W, C)."""

    family = "gan"

    def __init__(self, path: Path, manifest: dict[str, Any], sess):
        self.path, self.meta, self.sess = path, manifest, sess
        self.z_dim, self.num_classes = manifest["z_dim"], manifest["num_classes"]
        self.image_size, self.channels = manifest["image_size"], manifest["channels"]
        self.class_names = manifest.get("class_names") or []

    def raw(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """z (B, z_dim) [, labels (B,)] -> float images (B, C, H, W) in [-1, 1], as the generator made them."""
        feed = {"z": z.astype(np.float32)}
        if self.num_classes:
            feed["labels"] = np.asarray(labels, np.int64)
        return self.sess.run(None, feed)[0]

    def generate(self, n: int, seed: int | None = None, labels: list[int] | int | None = None,
                 z: np.ndarray | None = None) -> np.ndarray:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        if not self.num_classes and labels is not None:
            raise ValueError("this GAN is unconditional: it takes no labels")
        y = None
        if self.num_classes:
            y = np.arange(n) % self.num_classes if labels is None else np.broadcast_to(np.asarray(labels), (n,))
            if y.min() < 0 or y.max() >= self.num_classes:
                raise ValueError(f"labels must be in 0..{self.num_classes - 1}, got {y.min()}..{y.max()}")
        z = np.random.default_rng(seed).standard_normal((n, self.z_dim)) if z is None else z
        x = self.raw(z, y)  # (n, C, H, W)
        return np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)

# ----------------------------------------------------------------------------- classifier


class OnnxClassifierPipeline:
    """An exported text classifier: `predict_proba(texts)`, `classify(texts)`; calibrated as the run. The
    hashed n-gram bags (nbbag, bag) run on (input_ids (total,), offsets (B,)), hashed here by
    genforge.data.words.ngram_ids: numpy, the very function the training featurizer calls."""

    family = "classifier"

    def __init__(self, path: Path, manifest: dict[str, Any], sess):
        self.path, self.meta, self.sess = path, manifest, sess
        self.labels, self.temperature = manifest["labels"], manifest["temperature"]
        f = self.featurizer = manifest["featurizer"]
        self.tokenizer = tokenizer_from_dict(f["tokenizer"]) if "tokenizer" in f else None
        self.stoi = {w: i for i, w in enumerate(f.get("vocab") or [])}

    def ids(self, text: str) -> list[int]:
        f = self.featurizer
        text = text[:f["max_chars"]]
        if f["kind"] == "word":
            from .data.words import OOV, words
            return [self.stoi.get(w, OOV) for w in words(text, f["punctuation"])]
        if self.tokenizer.kind == "char":  # unseen characters are dropped, as in training
            return [self.tokenizer.stoi[c] for c in text if c in self.tokenizer.stoi]
        return self.tokenizer.encode(text)

    def features(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """texts -> ids (N, max_len) padded with 0 before ('pre') or after the text, lengths (N,) >= 1."""
        T, pre = self.featurizer["max_len"], self.featurizer["pad"] == "pre"
        ids, lengths = np.zeros((len(texts), T), np.int64), np.ones(len(texts), np.int64)
        for i, text in enumerate(texts):
            r = self.ids(text)
            r = r[-T:] if pre else r[:T]  # keep the end (pre) or the start (post)
            if r:  # nothing left: one padding token, the model sees 'empty'
                lengths[i] = len(r)
                if pre:
                    ids[i, T - len(r):] = r
                else:
                    ids[i, :len(r)] = r
        return ids, lengths

    def scores(self, texts: list[str]) -> np.ndarray:
        """Uncalibrated logits (N, 1 if binary else K)."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise ValueError("texts must be a list of strings")
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()), None)
        if bad is not None:
            raise ValueError(f"texts[{bad}] is empty or not a string; there is nothing to classify")
        texts = list(texts)
        return np.concatenate([self.sess.run(None, self.inputs(texts[s:s + 256]))[0]
                               for s in range(0, len(texts), 256)]) if texts else np.zeros((0, 1), np.float32)

    def inputs(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The model's inputs: ids and lengths (sequence models), or hashed n-gram ids and offsets (bags)."""
        f = self.featurizer
        if f["kind"] != "ngram":
            ids, lengths = self.features(texts)
            return {"input_ids": ids, "lengths": lengths}
        from .data.words import ngram_ids, words
        ids, offsets = ngram_ids([words(t[:f["max_chars"]], f["punctuation"]) for t in texts], f["ngram"], f["buckets"],
                                  tuple(f.get("char_ngrams", (0, 0))))
        return {"input_ids": ids, "offsets": offsets[:-1]}  # (total,), (N,): text i owns ids[offsets[i]:...]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        s = self.scores(texts).astype(np.float64) / self.temperature
        if s.shape[1] == 1:
            p = 1 / (1 + np.exp(-s))
            return np.concatenate([1 - p, p], 1)
        return softmax(s)

    def classify(self, texts: list[str]) -> list[dict]:
        return [{"label": self.labels[int(p.argmax())], "probs": {c: float(v) for c, v in zip(self.labels, p)}}
                for p in self.predict_proba(texts)]

# ----------------------------------------------------------------------------- CLI


def sample_command(pipe, args: argparse.Namespace) -> int:
    """`genforge sample DIR --backend onnx`: GPT text streamed to stdout, or a GAN grid PNG / .npz."""
    if pipe.family == "gpt":
        kw = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
        check_sampling(**kw)
        pipe.encode_prompt(args.prompt)  # fail on a bad prompt before printing anything
        for i in range(args.num_samples):
            if args.num_samples > 1:
                print(f"--- sample {i + 1}/{args.num_samples}", flush=True)
            sys.stdout.write(args.prompt)
            for pieces in pipe.stream(args.prompt, seed=None if args.seed is None else args.seed + i, **kw):
                sys.stdout.write(pieces[0])
                sys.stdout.flush()
            sys.stdout.write("\n")
        return 0
    if pipe.family == "gan":
        out, k, labels = args.out or "samples.png", pipe.num_classes, args.label
        n = args.n or (8 * min(k, 20) if k and labels is None and not out.endswith(".npz") else 64)
        if k and labels is None and not out.endswith(".npz"):  # a grid row of 8 per class, as with torch
            labels = [r % k for r in range(max(1, n // 8)) for _ in range(8)]
            n = len(labels)
        images = pipe.generate(n, seed=args.seed, labels=labels)
        if out.endswith(".npz"):
            np.savez_compressed(out, images=images)
        else:
            from .images import save_grid
            save_grid(images, out)
        print(f"genforge: wrote {out}")
        return 0
    raise ValueError(f"{pipe.path}: a {pipe.family!r} export has nothing to sample; use "
                     "genforge.onnx_pipelines.load(DIR): .classify(texts or images), .encode / .decode (vqvae)")
