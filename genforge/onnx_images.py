"""The torch-free runtime of the image families' exports (genforge/export_images.py writes them):

    genforge sample runs/t2i --backend onnx --prompt "a handwritten seven" --prompt "a 3" --n 8 --out grid.png
    from genforge.onnx_pipelines import load
    load("runs/t2i").generate("a handwritten seven", 16, seed=1, guidance=3)    # uint8 (16, H, W, C)
    load("runs/vq").encode(images), load("runs/vq").decode(codes)
    load("runs/cgan").generate("a handwritten seven", 8, seed=0)
    load("runs/mnist-cnn").classify(images)                                  # [{'label', 'probs'}]

numpy and onnxruntime only (tests/test_export_images.py runs it where `import torch` fails). Images are
uint8 (N, H, W, C), fed to the graphs as float (N, C, H, W) in [-1, 1] and read back rounded as
genforge.images.to_uint8 does. Prompts are read as the torch pipelines read them (genforge/data/captions.py).
Random draws use numpy's generator: a seed repeats the export's images, not the torch pipeline's, except
where sampling is greedy (top_k = 1 or temperature 0), where the text2image codes are torch's exactly.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .config import check_guidance, check_sampling
from .data.captions import CaptionVocab, caption_words
from .onnx_pipelines import (MANIFEST, OnnxClassifierPipeline, OnnxGANPipeline, OnnxGPTPipeline, sample_next,
                             session)


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
    """Prompts -> (word ids (N, text_len), warnings), as the torch pipelines read them: unknown words left
    out with a warning, a prompt with no known word the empty caption (unconditional, with a warning), no
    words at all or more known words than text_len a ValueError."""
    out, notes = np.zeros((len(prompts), text_len), np.int64), []  # PAD = 0
    for i, text in enumerate(prompts):
        words = caption_words(text) if isinstance(text, str) else []
        if not words:
            raise ValueError(f"prompt: {text!r} has no words; describe the image, e.g. 'a handwritten seven'")
        known = [w for w in words if w in vocab.index]
        ids, _ = vocab.encode(" ".join(known), text_len)
        note = f"prompt {text!r}: " + ("no word this model knows; the images are unconditional" if not known
                                       else f"unknown words left out: {', '.join(w for w in words if w not in vocab.index)}")
        if len(known) < len(words) and note not in notes:  # once per prompt, however many images it asks for
            notes.append(note)
        out[i, :len(ids)] = ids
    return out, notes


def finish(images: np.ndarray, notes: list[str], return_warnings: bool):
    """(images, warnings) for the server (no process-wide warning state), else the warnings issued."""
    if return_warnings:
        return images, notes
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return images


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
        first = self.defaults.get("guidance_from", 0)  # prior.guidance_from (0 in exports made before it)
        codes = []
        for step in range(L):
            last = logits[:, -1].astype(np.float32)  # (B or 2B, V)
            if guidance != 1:
                cond, uncond = np.split(last, 2)
                last = uncond + np.float32(guidance if step >= first else 1.0) * (cond - uncond)  # (B, V)
            nxt = sample_next(np.where(allowed, last, -np.inf), temperature, top_k, None, rng)  # (B,)
            codes.append(nxt)
            if step < L - 1:  # the same token for both row groups
                logits, past = self.forward(np.tile(nxt, len(rows) // len(nxt))[:, None], past, ids.shape[1] + step)
        return np.stack(codes, 1) - words

    def generate(self, prompt: str | list[str], n: int = 1, seed: int | None = None, guidance: float | None = None,
                 temperature: float | None = None, top_k: int | None = None, batch: int = 256,
                 return_warnings: bool = False):
        """n images for one prompt, or for a list of n prompts; None = the run's default; same seed, same images.
        The prompts' warnings are issued, or with return_warnings returned as (images, warnings)."""
        prompts = prompt_list(prompt, n)
        g = self.defaults["guidance"] if guidance is None else guidance
        check_guidance(g)
        temperature = self.defaults["temperature"] if temperature is None else temperature
        top_k = self.defaults["top_k"] if top_k is None else top_k
        check_sampling(1, temperature, top_k, None)
        (captions, notes), rng = caption_ids(self.vocab, prompts, self.text_len), np.random.default_rng(seed)
        images = np.concatenate([self.decoder.decode(self.sample_codes(captions[i:i + batch], g, temperature, top_k, rng))
                                 for i in range(0, n, batch)])
        return finish(images, notes, return_warnings)


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
                 temperature: float | None = None, top_k: int | None = None, return_warnings: bool = False):
        if guidance is not None or top_k is not None:
            raise ValueError("guidance, top_k: a caption GAN samples no tokens and has no guidance; leave them unset")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        captions, notes = caption_ids(self.vocab, prompt_list(prompt, n), self.text_len)
        z = np.random.default_rng(seed).standard_normal((n, self.z_dim)) * (temperature or 1.0)
        return finish(pixels(self.raw(z, captions)), notes, return_warnings)


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
