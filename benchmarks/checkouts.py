"""Two genforge checkouts in one process, for old-against-new benchmarks measured side by side.

    from checkouts import import_genforge
    gpt, fam = import_genforge("/path/to/old/checkout", ("genforge.models.gpt", "genforge.families.gpt"))
"""
from __future__ import annotations

import importlib
import sys


def _genforge_modules() -> dict:
    return {k: v for k, v in sys.modules.items() if k == "genforge" or k.startswith("genforge.")}


def import_genforge(path: str | None, names: tuple[str, ...]) -> tuple:
    """Import the modules `names` of the genforge package found at `path` (another checkout; None = this
    one) and return them. The genforge modules already imported are set aside and put back afterwards, so
    the two checkouts' modules live side by side, each with its own classes."""
    saved = _genforge_modules()
    for k in saved:
        del sys.modules[k]
    if path:
        sys.path.insert(0, path)
    try:
        return tuple(importlib.import_module(n) for n in names)
    finally:
        if path:
            sys.path.remove(path)
        for k in _genforge_modules():
            del sys.modules[k]
        sys.modules.update(saved)
