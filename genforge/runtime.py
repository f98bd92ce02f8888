"""Where a run executes: device, threads, precision, seeding and process rank.

This is the one place that knows about devices and distributed ranks. Everything that writes
to disk asks `runtime.is_main` first, so a multi-process launch (torchrun) writes each file once.
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import torch


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((check and check()) or (amx and amx()))


DEVICES = ("cpu", "cuda", "mps")


def pick_device(name: str) -> torch.device:
    """auto (CUDA, else MPS, else CPU) or a named device; an unknown or absent one is a ValueError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in DEVICES:
        raise ValueError(f"device {name!r} is not one genforge runs on; use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available on this machine (use auto or cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r}: MPS (Apple GPU) is not available on this machine (use auto or cpu)")
    return dev


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' -> bf16 where the hardware runs it natively, else fp32."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return torch.float32
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
             "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"train.dtype={name!r}: expected auto, fp32, bf16 or fp16")
    if table[name] == torch.float16 and device.type == "cpu":
        raise ValueError("train.dtype=fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return table[name]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is a dependency, but seeding must never be why a run fails
        pass


@dataclass
class Runtime:
    device: torch.device
    dtype: torch.dtype  # autocast dtype; fp32 means autocast is off
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def make_runtime(device: str = "auto", dtype: str = "auto", threads: int = 0) -> Runtime:
    """Build the runtime from train-config fields. threads=0 keeps torch's default."""
    if threads > 0:
        torch.set_num_threads(threads)
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1:
        raise NotImplementedError(
            "multi-process training (WORLD_SIZE>1) is not supported yet; run one process")
    dev = pick_device(device)
    return Runtime(device=dev, dtype=pick_dtype(dtype, dev), rank=rank, world_size=world)
