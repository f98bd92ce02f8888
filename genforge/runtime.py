"""Where a run executes: device, threads, precision, seeding and process rank.

This is the one place that knows about devices and distributed ranks. Everything that writes
to disk asks `runtime.is_main` first, so a multi-process launch (torchrun) writes each file once.

    torchrun --standalone --nproc-per-node=2 -m genforge train gpt --data input.txt

A run is distributed iff WORLD_SIZE > 1 (torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT): `make_runtime(distributed=True)` then joins the process group (gloo on the CPU, nccl on
CUDA) within GENFORGE_DIST_TIMEOUT seconds (default 1800, also the limit of every collective), and on
the CPU gives each local process cores / local processes threads; `close()` leaves the group.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import random
from dataclasses import dataclass
from datetime import timedelta

import torch

from .errors import DistributedError


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


def pick_dtype(name: str, device: torch.device, cuda_bf16: bool | None = None) -> torch.dtype:
    """'auto' -> bf16 where the hardware runs it natively; on a CUDA GPU without bf16 (before Ampere)
    fp16, which trains with a GradScaler (`Runtime.needs_scaler`); else fp32. `cuda_bf16` stands in
    for the probe of the GPU (tests)."""
    if name == "auto":
        if device.type == "cuda":
            bf16 = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
            return torch.bfloat16 if bf16 else torch.float16
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

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def main_first(self):
        """A block rank 0 runs before the other ranks (e.g. one that writes a cache the others then read)."""
        return _main_first(self)

    def same_on_every_rank(self, what: str, text: str) -> None:
        """A DistributedError unless `text` (e.g. the resolved config as JSON) is the same on every rank."""
        if not self.distributed:
            return
        import hashlib
        import torch.distributed as dist
        digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little", signed=True)
        mine = torch.tensor([digest], dtype=torch.int64)
        every = [torch.zeros_like(mine) for _ in range(self.world_size)]
        dist.all_gather(every, mine)
        differ = [r for r, t in enumerate(every) if int(t) != int(every[0])]
        if differ:
            raise DistributedError(f"{what} differs between rank 0 and rank(s) {', '.join(map(str, differ))}: "
                                   "every process must run the same command (same flags and files)")

    def close(self, together: bool = True) -> None:
        """The end of training: `together` (a run that ended well) a barrier, so no rank goes on while rank 0
        still evaluates or writes, and the group stays for this process's next run (cv's folds; it is left
        at exit): one formed again reuses torch's store keys, where a rank can read the last group's
        addresses ('Connection reset by peer'). After an error the group is left at once (the other
        ranks may be gone)."""
        import torch.distributed as dist
        if self.distributed and dist.is_initialized():
            if together:
                dist.barrier()
                return
            dist.destroy_process_group()

    @property
    def needs_scaler(self) -> bool:
        """fp16 autocast on a GPU: losses are scaled so small gradients do not underflow (torch.amp.GradScaler)."""
        return self.dtype == torch.float16 and self.device.type == "cuda"

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A batch onto the device: on CUDA through pinned memory with a non-blocking copy (the copy
        overlaps the running kernels), elsewhere a plain `.to`."""
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


@contextlib.contextmanager
def _main_first(rt: Runtime):
    import torch.distributed as dist
    if rt.distributed and not rt.is_main:
        dist.barrier()
    yield
    if rt.distributed and rt.is_main:
        dist.barrier()


def leave_group() -> None:
    """The end of a command under torchrun (`genforge.cli.main`): every rank leaves the process group
    together, a barrier and then destroy, while all of them are alive. Left to interpreter exit, one rank
    could tear down its gloo threads while a slower peer still talked to it (a rare abort at exit)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main_process() -> bool:
    """False on the ranks of a torchrun launch but rank 0 (RANK set and not 0): what reports and writes once."""
    return os.environ.get("RANK", "0") == "0"


def dist_timeout() -> float:
    """GENFORGE_DIST_TIMEOUT: seconds to form the process group and to wait in any collective."""
    raw = os.environ.get("GENFORGE_DIST_TIMEOUT", "1800")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"GENFORGE_DIST_TIMEOUT={raw!r}: expected a positive number of seconds")
    return value


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected an integer (as torchrun sets it)") from None


def _join_group(dev: torch.device, rank: int, world: int) -> None:
    """Join the process group of WORLD_SIZE ranks (torchrun's env:// rendezvous), or fail naming the timeout."""
    import torch.distributed as dist
    if dist.is_initialized():
        return
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE={world} but {name} is not set: launch with torchrun "
                             "(torchrun --standalone --nproc-per-node=N -m genforge train ...)")
    timeout = dist_timeout()
    # on CUDA, nccl for the GPU tensors and gloo for the CPU ones (stop flags, RNG states, checkpoint plans)
    backend = "cpu:gloo,cuda:nccl" if dev.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout))
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    except Exception as e:  # a store or connect timeout, a refused connection, ...
        where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        raise DistributedError(f"rank {rank}: the {world}-process group ({backend}, rendezvous at {where}) did not "
                           f"form within GENFORGE_DIST_TIMEOUT={timeout:g}s: {type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}") from None


def make_runtime(device: str = "auto", dtype: str = "auto", threads: int = 0, distributed: bool = False) -> Runtime:
    """Build the runtime from train-config fields. threads=0 keeps torch's default (under torchrun:
    cores / local processes). `distributed` (training) joins the process group when WORLD_SIZE > 1;
    without it (sampling, evaluation, serving) the runtime is rank 0 of 1."""
    world = _env_int("WORLD_SIZE", 1) if distributed else 1
    rank = _env_int("RANK", 0) if world > 1 else 0
    if world > 1 and not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    dev = pick_device(device)
    if threads > 0:
        torch.set_num_threads(threads)
    elif world > 1 and dev.type == "cpu":  # torchrun sets OMP_NUM_THREADS=1; share the cores instead
        local = max(1, _env_int("LOCAL_WORLD_SIZE", 1))
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // local))
    if world > 1:
        if dev.type == "cuda":
            if dev.index is None:  # one GPU per local rank
                dev = torch.device("cuda", _env_int("LOCAL_RANK", 0))
            torch.cuda.set_device(dev)
        _join_group(dev, rank, world)
    if dev.type == "cuda":  # TF32 matmuls and convolutions (Ampere and later): the speed, at bf16-level accuracy
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return Runtime(device=dev, dtype=pick_dtype(dtype, dev), rank=rank, world_size=world)
