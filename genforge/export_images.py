"""ONNX export of the image families (genforge/export.py calls these; `genforge export RUN --format onnx`):

    genforge export runs/vq --format onnx                      # vqvae: encoder.onnx + decoder.onnx
    genforge export runs/t2i --format onnx [--quantize int8]   # text2image: prior.onnx + decoder.onnx
    genforge export runs/cgan --format onnx                    # captiongan: generator.onnx
    genforge export runs/mnist-cnn --format onnx               # imageclf: model.onnx

- vqvae: `encoder.onnx`, images (B, C, H, W) in [-1, 1] -> codes (B, L) (the encoder and the nearest-code or
  FSQ quantiser), and `decoder.onnx`, codes (B, L) -> images (B, C, H, W) in [-1, 1];
- text2image: `prior.onnx`, the GPT decoder with a KV cache (genforge/export.py's, the same names) over the
  joint vocabulary, and the frozen VQ `decoder.onnx`; the caption vocabulary, the layout (words, codes,
  text_len, code_len) and the run's sampling defaults (guidance, temperature, top_k) in the manifest;
- captiongan: `generator.onnx`, (z (B, z_dim), caption word ids (B, text_len)) -> images, caption vocabulary in
  the manifest;
- imageclf: `model.onnx`, images (B, C, H, W) in [-1, 1] -> logits (B, K); labels and temperature in the manifest.
`--quantize int8` quantises the `model` file (the prior, the generator, the classifier; their linear layers,
convolutions stay fp32); quality in quantize.json: the prior's validation losses, the classifier's test
accuracy, the caption GAN's pixel change against torch. A vqvae does not quantise (its codes must stay exact).
The runtime side is genforge/onnx_images.py; tests: tests/test_export_images.py.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .export import save_decoder, save_onnx
from .images import to_uint8
from .onnx_images import pixels


class VQEncoder(nn.Module):
    """A VQ-VAE's encoder and quantiser: images (B, C, H, W) in [-1, 1] -> codes (B, L)."""

    def __init__(self, vq):
        super().__init__()
        self.vq = vq

    def forward(self, images):
        return self.vq.quantizer.indices(self.vq._vectors(images)).view(images.size(0), -1)  # (B*L,) -> (B, L)


class VQDecoder(VQEncoder):
    """codes (B, L) -> images (B, C, H, W) in [-1, 1]: VQVAE.decode without its checks (the runtime makes them)."""

    def forward(self, codes):
        vq = self.vq
        return vq._image(vq._logits(vq.quantizer.lookup(codes.flatten()), codes.size(0)))


class ImageLogits(nn.Module):
    """An image classifier's forward as one output: images (B, C, H, W) in [-1, 1] -> logits (B, K)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images)[0]


def batch_axes(*names: str) -> dict[str, dict[int, str]]:
    return {n: {0: "batch_size"} for n in names}


def image_dims(c) -> dict[str, Any]:
    return {"image_size": c.image_size, "channels": c.channels}


def example_images(c) -> torch.Tensor:
    return torch.rand(2, c.channels, c.image_size, c.image_size) * 2 - 1  # (2, C, H, W)


def save_vq(vq, out: Path, encoder: bool) -> dict[str, Any]:
    """decoder.onnx (codes -> images) and, with `encoder`, encoder.onnx (images -> codes)."""
    codes = torch.randint(0, vq.codebook_size, (2, vq.code_length))
    save_onnx(VQDecoder(vq), (codes,), out / "decoder.onnx", ["codes"], ["images"], batch_axes("codes", "images"))
    if encoder:
        save_onnx(VQEncoder(vq), (example_images(vq.config),), out / "encoder.onnx", ["images"], ["codes"],
                  batch_axes("images", "codes"))
    return {"decoder": "decoder.onnx", "codebook_size": vq.codebook_size, "code_length": vq.code_length,
            "grid": list(vq.grid), **image_dims(vq.config)}


def vqvae_onnx(pipe, out: Path) -> dict[str, Any]:
    return {"model": "decoder.onnx", "encoder": "encoder.onnx", **save_vq(pipe.model, out, encoder=True)}


def text2image_onnx(pipe, out: Path) -> dict[str, Any]:
    """prior.onnx, the GPT decoder over the joint vocabulary; decoder.onnx, the frozen VQ decoder; the caption
    vocabulary, the layout and the run's sampling defaults (its measured guidance) in the manifest."""
    pc = pipe.pc
    return {"model": "prior.onnx", **save_decoder(pipe.prior, out / "prior.onnx"), **save_vq(pipe.vqvae, out, False),
            "caption_vocab": pipe.vocab.to_dict(), "layout": dataclasses.asdict(pipe.layout),
            "defaults": {"guidance": pipe.guidance, "guidance_from": pipe.guidance_from,
                         "temperature": pc.temperature, "top_k": pc.top_k}}


def captiongan_onnx(pipe, out: Path) -> dict[str, Any]:
    c = pipe.g.config
    args = (torch.randn(2, c.z_dim), torch.randint(0, len(pipe.vocab), (2, pipe.text_len)))
    save_onnx(pipe.g, args, out / "generator.onnx", ["z", "captions"], ["images"],
              batch_axes("z", "captions", "images"))
    return {"model": "generator.onnx", "z_dim": c.z_dim, "text_len": pipe.text_len,
            "caption_vocab": pipe.vocab.to_dict(), **image_dims(c)}


def imageclf_onnx(pipe, out: Path) -> dict[str, Any]:
    save_onnx(ImageLogits(pipe.model), (example_images(pipe.model.config),), out / "model.onnx", ["images"],
              ["logits"], batch_axes("images", "logits"))
    return {"model": "model.onnx", "labels": pipe.labels, "temperature": pipe.temperature,
            **image_dims(pipe.model.config)}


IMAGE_WRITERS = {"vqvae": vqvae_onnx, "text2image": text2image_onnx, "captiongan": captiongan_onnx,
                 "imageclf": imageclf_onnx}


def measure_images(onnx_pipe, pipe, data: str | None) -> dict[str, Any]:
    """text2image: the prior's validation losses on (up to 256 of) the test split; imageclf: test accuracy;
    captiongan: the mean uint8 pixel change against the torch generator on 64 fixed latents and captions."""
    from .data import images as image_data
    cfg = pipe.meta["config"]["data"]
    if pipe.family == "captiongan":
        z = np.random.default_rng(0).standard_normal((64, onnx_pipe.z_dim))
        ids, _ = pipe.encode([pipe.vocab.words[2 + i % (len(pipe.vocab) - 2)] for i in range(64)], 64)  # one-word captions
        with torch.no_grad():
            ref = to_uint8(pipe.g(torch.from_numpy(z).float(), ids))
        ours = onnx_pipe.raw(z, ids.numpy())
        return {"mean_abs_pixel_change_vs_torch": float(np.abs(pixels(ours).astype(float) - ref).mean())}
    if pipe.family == "imageclf":
        from .families.imageclf import relabel, source
        test = relabel(image_data.load(source(data or cfg["path"], "--data"), pipe.image_size, pipe.channels, "test",
                                       cfg["test_fraction"], cfg["seed"], cfg["max_bad"]), pipe.labels, "--data")
        return {"data": test.source, "accuracy": float((onnx_pipe.predict_proba(test.images).argmax(1)
                                                        == test.labels).mean()), "images": len(test.images)}
    from .data.captions import caption_words
    from .data.templates import captioned
    from .families.text2image import image_codes, prior_loss, resolve_data
    seed = pipe.meta["config"]["train"]["seed"]
    test = captioned(image_data.load(resolve_data(data or cfg["path"]), pipe.image_size, pipe.channels, "test",
                                     cfg["test_fraction"], seed, cfg["max_bad"]), seed)
    cut = [" ".join(caption_words(c)[:pipe.text_len]) for c in test.captions[:256]]
    seq = pipe.layout.sequences(torch.as_tensor(pipe.vocab.encode_batch(cut, pipe.text_len)),
                                image_codes(pipe.vqvae, test.images[:256]))  # (N, 1 + text_len + L)
    loss, parts = prior_loss(torch.from_numpy(onnx_pipe.logits(seq[:, :-1].numpy())), seq[:, 1:], pipe.layout, pipe.pc)
    return {"data": test.source, "val_loss": loss.item(), "val_image_loss": parts["image_loss"].item(),
            "examples": len(seq)}
