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
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .config import check_sampling
from .data.captions import CaptionVocab, caption_words
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

    def empty_past(self, batch: int) -> list[np.ndarray]:
        return [np.zeros((batch, self.n_head, 0, self.head_size), np.float32)] * (2 * self.n_layer)

    def forward(self, ids: np.ndarray, past: list[np.ndarray], start: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """ids (B, T) at positions start.. after `past` -> (logits (B, T, V), presents)."""
        B, T = ids.shape
        feed = {"input_ids": ids.astype(np.int64), "attention_mask": np.ones((B, start + T), np.int64),
                "position_ids": np.broadcast_to(np.arange(start, start + T, dtype=np.int64), (B, T)).copy()}
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
    """An exported sequence classifier: `predict_proba(texts)`, `classify(texts)`; calibrated as the run."""

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
        ids, lengths = self.features(list(texts))
        return np.concatenate([self.sess.run(None, {"input_ids": ids[s:s + 256], "lengths": lengths[s:s + 256]})[0]
                               for s in range(0, len(texts), 256)]) if texts else np.zeros((0, 1), np.float32)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        s = self.scores(texts).astype(np.float64) / self.temperature
        if s.shape[1] == 1:
            p = 1 / (1 + np.exp(-s))
            return np.concatenate([1 - p, p], 1)
        return softmax(s)

    def classify(self, texts: list[str]) -> list[dict]:
        return [{"label": self.labels[int(p.argmax())], "probs": {c: float(v) for c, v in zip(self.labels, p)}}
                for p in self.predict_proba(texts)]

# ----------------------------------------------------------------------------- image families


def pixels(x: np.ndarray) -> np.ndarray:
    """float (B, C, H, W) in [-1, 1] -> uint8 (B, H, W, C), rounded as genforge.images.to_uint8."""
    return np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)


def image_input(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 (N, size, size, channels) -> float32 (N, C, H, W) in [-1, 1]; anything else is a ValueError."""
    want = (size, size, channels)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != want:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise ValueError(f"images: expected uint8 (N, {', '.join(map(str, want))}), got {got}")
    return images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5) - np.float32(1)


def second_session(path: Path, manifest: dict[str, Any], key: str, sess):
    return session(path / manifest[key], sess.get_session_options().intra_op_num_threads)


def caption_ids(vocab: CaptionVocab, prompts: list[str], text_len: int) -> np.ndarray:
    """Prompts -> word ids (N, text_len), as the torch pipelines read them: unknown words left out with a
    warning, a prompt with no known word the empty caption (unconditional, with a warning), no words at all
    or more known words than text_len a ValueError."""
    out = np.zeros((len(prompts), text_len), np.int64)  # PAD = 0
    for i, text in enumerate(prompts):
        words = caption_words(text) if isinstance(text, str) else []
        if not words:
            raise ValueError(f"prompt: {text!r} has no words; describe the image, e.g. 'a handwritten seven'")
        known = [w for w in words if w in vocab.index]
        ids, _ = vocab.encode(" ".join(known), text_len)
        if len(known) < len(words):
            warnings.warn(f"prompt {text!r}: " + ("no word this model knows; the images are unconditional" if not known
                          else f"unknown words left out: {', '.join(w for w in words if w not in vocab.index)}"),
                          stacklevel=3)
        out[i, :len(ids)] = ids
    return out


def prompt_list(prompt: str | list[str], n: int) -> list[str]:
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    prompts = [prompt] * n if isinstance(prompt, str) else list(prompt)
    if len(prompts) != n:
        raise ValueError(f"prompt: {len(prompts)} prompts for n={n} images; give one prompt, or one per image")
    return prompts


class OnnxVQVAEPipeline:
    """An exported VQ-VAE: `encode(images uint8 (N, H, W, C))` -> int64 (N, L); `decode(codes)` -> uint8 images."""

    family = "vqvae"

    def __init__(self, path: Path, manifest: dict[str, Any], sess):
        self.path, self.meta, self.sess = path, manifest, sess  # sess: the decoder
        self.image_size, self.channels = manifest["image_size"], manifest["channels"]
        self.codebook_size, self.code_length = manifest["codebook_size"], manifest["code_length"]
        self.encoder = second_session(path, manifest, "encoder", sess) if "encoder" in manifest else None

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.encoder.run(None, {"images": image_input(images, self.image_size, self.channels)})[0]

    def raw(self, codes) -> np.ndarray:
        """codes (N, L) -> float images (N, C, H, W) in [-1, 1]."""
        codes = np.asarray(codes, np.int64)
        if codes.ndim != 2 or codes.shape[1] != self.code_length:
            raise ValueError(f"codes: expected shape (N, {self.code_length}), got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must be in 0..{self.codebook_size - 1}, got {codes.min()}..{codes.max()}")
        return self.sess.run(None, {"codes": codes})[0]

    def decode(self, codes) -> np.ndarray:
        return pixels(self.raw(codes))

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return self.decode(self.encode(images))


class OnnxText2ImagePipeline(OnnxGPTPipeline):
    """An exported text2image run: `generate(prompt, n, seed, guidance, temperature, top_k)` -> uint8 (n, H, W, C).

    The prior (the GPT decoder, sampled through its KV cache) runs [conditional ; unconditional] rows
    together, takes uncond + g * (cond - uncond) (only the conditional rows at g = 1), keeps image codes
    only (the logits mask of the image positions) and samples with temperature / top-k; the VQ decoder turns
    the codes into images. Top-k 1 (or temperature 0) gives the torch pipeline's codes exactly."""

    family = "text2image"

    def __init__(self, path: Path, manifest: dict[str, Any], sess):
        self.path, self.meta, self.sess = path, manifest, sess
        self.context_length, self.n_layer = manifest["context_length"], manifest["n_layer"]
        self.n_head, self.head_size = manifest["n_head"], manifest["head_size"]
        self.vocab = CaptionVocab.from_dict(manifest["caption_vocab"], f"{path / MANIFEST}: caption_vocab")
        self.layout, self.defaults = manifest["layout"], manifest["defaults"]
        self.text_len = self.layout["text_len"]
        self.decoder = OnnxVQVAEPipeline(path, manifest, second_session(path, manifest, "decoder", sess))
        self.image_size, self.channels = manifest["image_size"], manifest["channels"]

    def sample_codes(self, captions: np.ndarray, guidance: float, temperature: float, top_k: int | None,
                     rng: np.random.Generator) -> np.ndarray:
        """captions (B, text_len) -> codes (B, L) in 0..K-1."""
        words, bos, L = self.layout["words"], self.layout["words"] + self.layout["codes"], self.layout["code_len"]
        rows = captions if guidance == 1 else np.concatenate([captions, np.zeros_like(captions)])  # (B or 2B, T)
        ids = np.concatenate([np.full((len(rows), 1), bos, np.int64), rows], 1)  # [BOS][caption]
        allowed = np.zeros(self.meta["vocab_size"], bool)
        allowed[words:bos] = True  # image positions predict codes only
        logits, past = self.forward(ids, self.empty_past(len(rows)), 0)
        codes = []
        for step in range(L):
            last = logits[:, -1].astype(np.float32)  # (B or 2B, V)
            if guidance != 1:
                cond, uncond = np.split(last, 2)
                last = uncond + np.float32(guidance) * (cond - uncond)  # (B, V)
            nxt = sample_next(np.where(allowed, last, -np.inf), temperature, top_k, None, rng)  # (B,)
            codes.append(nxt)
            if step < L - 1:  # the same token for both row groups
                logits, past = self.forward(np.tile(nxt, len(rows) // len(nxt))[:, None], past, ids.shape[1] + step)
        return np.stack(codes, 1) - words

    def generate(self, prompt: str | list[str], n: int = 1, seed: int | None = None, guidance: float | None = None,
                 temperature: float | None = None, top_k: int | None = None, batch: int = 256) -> np.ndarray:
        """n images for one prompt, or for a list of n prompts; None = the run's default; same seed, same images."""
        prompts = prompt_list(prompt, n)
        g = self.defaults["guidance"] if guidance is None else guidance
        if not (isinstance(g, (int, float)) and math.isfinite(g) and 0 <= g <= 100):
            raise ValueError(f"guidance: the guidance scale must be a number in [0, 100], got {g!r}")
        temperature = self.defaults["temperature"] if temperature is None else temperature
        top_k = self.defaults["top_k"] if top_k is None else top_k
        check_sampling(1, temperature, top_k, None)
        captions, rng = caption_ids(self.vocab, prompts, self.text_len), np.random.default_rng(seed)
        return np.concatenate([self.decoder.decode(self.sample_codes(captions[i:i + batch], g, temperature, top_k, rng))
                               for i in range(0, n, batch)])


class OnnxCaptionGANPipeline(OnnxGANPipeline):
    """An exported caption GAN: `generate(prompt, n, seed, temperature)` -> uint8 (n, H, W, C); latents from
    numpy's generator (scaled by `temperature`), so a seed repeats the export's images, not torch's."""

    family = "captiongan"

    def __init__(self, path: Path, manifest: dict[str, Any], sess):
        self.path, self.meta, self.sess = path, manifest, sess
        self.z_dim, self.text_len = manifest["z_dim"], manifest["text_len"]
        self.image_size, self.channels = manifest["image_size"], manifest["channels"]
        self.vocab = CaptionVocab.from_dict(manifest["caption_vocab"], f"{path / MANIFEST}: caption_vocab")

    def raw(self, z: np.ndarray, captions: np.ndarray) -> np.ndarray:
        """z (B, z_dim), caption word ids (B, text_len) -> float images (B, C, H, W) in [-1, 1]."""
        return self.sess.run(None, {"z": z.astype(np.float32), "captions": np.asarray(captions, np.int64)})[0]

    def generate(self, prompt: str | list[str], n: int = 1, seed: int | None = None, guidance: float | None = None,
                 temperature: float | None = None, top_k: int | None = None) -> np.ndarray:
        if guidance is not None or top_k is not None:
            raise ValueError("guidance, top_k: a caption GAN samples no tokens and has no guidance; leave them unset")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        captions = caption_ids(self.vocab, prompt_list(prompt, n), self.text_len)
        z = np.random.default_rng(seed).standard_normal((n, self.z_dim)) * (temperature or 1.0)
        return pixels(self.raw(z, captions))


class OnnxImageClassifierPipeline(OnnxClassifierPipeline):
    """An exported image classifier: `predict_proba(images uint8 (N, H, W, C))`, `classify(images)`; calibrated."""

    family = "imageclf"

    def __init__(self, path: Path, manifest: dict[str, Any], sess):
        self.path, self.meta, self.sess = path, manifest, sess
        self.labels, self.temperature = manifest["labels"], manifest["temperature"]
        self.image_size, self.channels = manifest["image_size"], manifest["channels"]

    def scores(self, images: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (N, K)."""
        x = image_input(images, self.image_size, self.channels)
        return np.concatenate([self.sess.run(None, {"images": x[s:s + 256]})[0] for s in range(0, len(x), 256)]) \
            if len(x) else np.zeros((0, len(self.labels)), np.float32)


IMAGE_PIPELINES = {"vqvae": OnnxVQVAEPipeline, "text2image": OnnxText2ImagePipeline,
                   "captiongan": OnnxCaptionGANPipeline, "imageclf": OnnxImageClassifierPipeline}

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


def sample_images(pipe, args: argparse.Namespace) -> int:
    """A text-to-image export: a grid with a row per --prompt (PNG), or the images as .npz."""
    if not args.prompts:
        raise ValueError("--prompt: a text-to-image export needs a prompt, e.g. --prompt \"a handwritten seven\"")
    out, n = args.out or "samples.png", args.n or (16 if len(args.prompts) == 1 else 8)
    prompts = [p for p in args.prompts for _ in range(n)]
    images = pipe.generate(prompts, len(prompts), seed=args.seed, guidance=args.guidance,
                           temperature=args.temperature, top_k=args.top_k)
    if out.endswith(".npz"):
        np.savez_compressed(out, images=images, prompts=np.array(prompts))
    else:
        from .images import save_grid
        save_grid(images, out, n if len(args.prompts) > 1 else min(n, 8))
    print(f"genforge: wrote {out}")
    return 0
