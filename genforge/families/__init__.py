"""The family registry: name -> module following `base.Family` (sections, PRESETS, train, pipelines,
and its answers to the CLI and the server).

    family = families.get("gpt")            family = families.of_run("runs/gpt-...")

Adding a family means adding its module here, its model file in genforge/models/, and tests
(tests/test_families.py runs every family and preset through the same contract). This file
imports no family module until one is asked for, so `genforge --help` stays instant.
"""
from __future__ import annotations

import importlib
from typing import Any

FAMILIES = {"gpt": "genforge.families.gpt", "gan": "genforge.families.gan",
            "classifier": "genforge.families.classifier", "vqvae": "genforge.families.vqvae",
            "imageclf": "genforge.families.imageclf", "captiongan": "genforge.families.captiongan",
            "text2image": "genforge.families.text2image"}


def get(name: str):
    if name not in FAMILIES:
        from ..config import closest
        raise ValueError(f"unknown model family '{name}'{closest(name, FAMILIES)}; "
                         f"available: {', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[name])


def of_run(path):
    """The family module of the run at `path` (hf:DIR is a GPT), from its checkpoint's metadata alone."""
    if str(path).startswith("hf:"):
        return get("gpt")
    from ..checkpoint import read_meta
    from ..run import find_checkpoint
    return get(read_meta(find_checkpoint(path)).get("family", "?"))


def model_info(pipe) -> dict[str, Any]:
    """The fields the server lists for a loaded pipeline beyond its id and family, answered by its family;
    a pipeline of a family not registered here (a stand-in) is described by the contract it follows."""
    if pipe.family in FAMILIES:
        return get(pipe.family).model_info(pipe)
    from .base import contract_info
    return contract_info(pipe)
