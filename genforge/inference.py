"""Checkpoint -> ready-to-use pipeline, shared by the Python API, the CLI and the server.

    import genforge
    model = genforge.load("runs/gpt-...")      # a run directory, a .safetensors file, or hf:DIR
    model.generate("I love programming")

The pipeline follows its kind's contract in genforge/families/base.py (text generation, image
generation or classification).
"""
from __future__ import annotations

from . import families


def load(path, device: str = "auto", dtype: str = "fp32"):
    """Rebuild the pipeline of whatever family the checkpoint holds."""
    return families.of_run(path).pipeline_from_checkpoint(path, device=device, dtype=dtype)
