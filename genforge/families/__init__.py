"""The family registry: name -> module with `sections()`, `PRESETS`, `train()` and a Pipeline.

Adding a family means adding its module here, its model file in genforge/models/, and tests.
"""
from __future__ import annotations

import importlib

FAMILIES = {"gpt": "genforge.families.gpt", "gan": "genforge.families.gan",
            "classifier": "genforge.families.classifier"}


def get(name: str):
    if name not in FAMILIES:
        from ..config import closest
        raise ValueError(f"unknown model family '{name}'{closest(name, FAMILIES)}; "
                         f"available: {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])
