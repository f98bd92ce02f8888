"""Checkpoint -> ready-to-use pipeline, shared by the Python API, the CLI and the server.

    import genforge
    model = genforge.load("runs/gpt-...")      # a run directory, a .safetensors file, or hf:DIR
    model.generate("I love programming")

The pipeline follows its kind's contract in genforge/families/base.py (text generation, image
generation or classification).
"""
from __future__ import annotations

from . import checkpoint, families, validate
from .run import find_checkpoint


def load(path, device: str = "auto", dtype: str = "fp32"):
    """Rebuild the pipeline of whatever family the checkpoint holds."""
    if str(path).startswith("hf:"):
        return families.get("gpt").GPTPipeline.from_checkpoint(path, device=device, dtype=dtype)
    ckpt = find_checkpoint(path)
    meta = checkpoint.read_meta(ckpt)
    validate.checkpoint_meta(meta, ckpt)  # config, tokenizer, labels: one line naming the file
    family = families.get(meta["family"])
    try:
        return family.pipeline_from_checkpoint(path, device=device, dtype=dtype)
    except checkpoint.TensorMismatch as e:  # raised without the file name by checkpoint.load_module
        raise checkpoint.TensorMismatch(f"{ckpt}: {e}") from None
