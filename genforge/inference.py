"""Checkpoint -> ready-to-use pipeline, shared by the Python API, the CLI and the server.

    import genforge
    model = genforge.load("runs/gpt-...")      # a run directory, a .safetensors file, or hf:DIR
    model.generate("I love programming")
"""
from __future__ import annotations

from . import checkpoint, families
from .run import find_checkpoint


def load(path, device: str = "auto", dtype: str = "fp32"):
    """Rebuild the pipeline of whatever family the checkpoint holds."""
    if str(path).startswith("hf:"):
        return families.get("gpt").GPTPipeline.from_checkpoint(path, device=device, dtype=dtype)
    meta = checkpoint.read_meta(find_checkpoint(path))
    family = families.get(meta.get("family", "?"))
    return family.pipeline_from_checkpoint(path, device=device, dtype=dtype)
