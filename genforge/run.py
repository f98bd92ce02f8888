"""Run directories: one folder holds everything about a run.

    RUN/config.json                resolved configuration (all sections) and family
    RUN/tokenizer.json             tokenizer (text families)
    RUN/checkpoints/last.safetensors   newest state, with optimizer/RNG state for --resume
    RUN/checkpoints/best.safetensors   weights with the best validation metric (used to sample)
    RUN/metrics.jsonl              one JSON object per logged step
    RUN/tb/                        TensorBoard event files (tensorboard --logdir RUN/tb)
    RUN/loss.png                   loss curves
    RUN/samples/                   samples written during and after training

Every command that takes a run accepts this folder (or a checkpoint file inside it).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path


class RunDir:
    def __init__(self, path: str | os.PathLike, is_main: bool = True):
        self.path = Path(path)
        self.is_main = is_main

    @classmethod
    def default(cls, family: str) -> RunDir:
        return cls(Path("runs") / f"{family}-{time.strftime('%Y%m%d-%H%M%S')}")

    def create(self, resume: bool) -> None:
        if not self.is_main:
            return
        if self.checkpoint("last").exists() and not resume:
            raise FileExistsError(f"{self.path} already holds a run (checkpoints/last.safetensors); "
                                  "pass --resume to continue it, or choose another --out")
        if resume and not self.checkpoint("last").exists():
            raise FileNotFoundError(f"--resume: {self.checkpoint('last')} does not exist")
        if resume:  # a killed checkpoint write leaves its temporary file behind
            from .checkpoint import remove_stale_tmp
            remove_stale_tmp(self.path / "checkpoints")
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.path / "samples").mkdir(exist_ok=True)

    def checkpoint(self, which: str = "best") -> Path:
        return self.path / "checkpoints" / f"{which}.safetensors"

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj) -> None:
        if self.is_main:
            tmp = self.path / f".{name}.tmp"
            tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False))
            os.replace(tmp, self.path / name)

    def read_json(self, name: str) -> dict:
        """RUN/name, which must hold a JSON object (errors name the file)."""
        from .validate import read_json_object
        return read_json_object(self.path / name)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A run folder -> its best (else last) checkpoint; a .safetensors file -> itself."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.exists():
        raise FileNotFoundError(f"run not found: {p}")
    for which in ("best", "last"):
        c = p / "checkpoints" / f"{which}.safetensors"
        if c.exists():
            return c
    raise FileNotFoundError(f"{p}: no checkpoints/best.safetensors or checkpoints/last.safetensors "
                            "(is this a genforge run directory?)")
