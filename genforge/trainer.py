"""The one training loop, shared by every family. It knows no family.

A family hands the trainer a `Task`: its modules, its optimizers, and the *phases* of one step,
each phase a (optimizer name, loss function) pair. A language model has one phase; a GAN has
two (D, then G). The trainer owns everything else: placement (device, `torch.compile`, and the
place a data-parallel wrapper goes), precision (via Runtime), the seeded batch generator, LR
warmup and decay, gradient accumulation and clipping, NaN checks, periodic evaluation, best and
last checkpoints (atomic), resume, early stopping, time budget, Ctrl-C, and logging.

    trainer = Trainer(task, cfg, run, runtime)   # places task.modules, then task.bind(trainer)
    result = trainer.fit()

Inside its loss functions a task calls `self.trainer.module(name)` (the placed module, compiled
or wrapped as configured) and draws batches with `self.trainer.generator` and `self.trainer.shares`
(its data order or token windows take the drawing slot's share); `task.modules` stay the plain
modules that checkpoints hold and evaluation uses.

Under torchrun (Runtime.distributed) every trained module is wrapped in DistributedDataParallel,
gradients are averaged only on the last micro-step, and each rank runs grad_accum / world_size
micro-steps, so the global batch (batch_size x grad_accum) is the recipe's on any world size. Each
micro-step is a slot of the global batch with its own streams and data share (data/shards.py), so
N processes draw what one process with the same grad_accum draws. Rank 0
alone evaluates (on the plain modules), logs and writes checkpoints; the logged training losses are
averaged over the ranks, and every stop decision (max_iters, time budget, early stopping, stop_at,
NaN, Ctrl-C) is taken by all ranks at the same step. With --train.distributed=fsdp a sharded copy
trains instead of the DDP wrapper (genforge/fsdp.py). 'last' holds every rank's RNG streams, so a
resume on as many processes is exact; fp16 (GPUs without bf16) trains with a GradScaler.
"""
from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from . import checkpoint, fsdp
from .data.shards import Shares
from .errors import TrainingDiverged
from .monitor import Monitor
from .run import RunDir
from .runtime import Runtime


@dataclass
class TrainConfig:
    max_iters: int = 2000
    batch_size: int = 32
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3  # peak learning rate (AdamW; per-family groups may scale it)
    min_lr: float = 1e-4  # floor of the cosine/linear decay
    warmup_iters: int = 100
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    optimizer: Literal["adamw", "muon"] = "adamw"  # muon: Muon on hidden matrices, AdamW on the rest
    muon_lr: float = 0.02  # peak LR of the Muon groups
    muon_weight_decay: float = 0.0  # decoupled: each step scales Muon's matrices by 1 - lr * this
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global grad norm per optimizer; 0 = off
    eval_interval: int = 250  # steps between evaluations (and 'last' checkpoints)
    eval_iters: int = 0  # batches per evaluation; 0 = the whole validation split
    log_interval: int = 10
    patience: int = 0  # stop after this many evaluations without improvement; 0 = never
    stop_at: float | None = None  # stop once the selection metric (e.g. val loss) reaches this value
    max_seconds: float = 0.0  # training-time budget (evaluations excluded), on `clock`; 0 = none
    time_schedule: bool = False  # decay the LR over max_seconds, not max_iters (not bit-reproducible)
    clock: Literal["wall", "cpu"] = "wall"  # what max_seconds counts: wall time, or this process's CPU time
    seed: int = 1337
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps
    dtype: str = "auto"  # auto (bf16 where native), fp32, bf16, fp16 (GPU only)
    compile: bool = False  # torch.compile the model
    distributed: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: DDP replicas, or FSDP2 shards (GPT family)
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    samples: bool = True  # write a sample (text, image grid) at every evaluation

    def validate(self):
        for name in ("max_iters", "batch_size", "grad_accum", "eval_interval", "log_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be positive, got {getattr(self, name)}")
        for name in ("lr", "min_lr", "muon_lr", "muon_weight_decay", "weight_decay", "grad_clip", "max_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("warmup_iters", "patience", "eval_iters", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.time_schedule and not self.max_seconds:
            raise ValueError("train.time_schedule needs train.max_seconds > 0")


# (optimizer names, loss function): the loss's gradients are applied by all the named optimizers
Phase = tuple[tuple[str, ...], Callable[[], tuple[torch.Tensor, dict[str, float]]]]


class Task(Protocol):
    """What a family gives the trainer.

    Optional methods, called when present: `after_step(step)` after all phases (e.g. an EMA
    update); `before_save()` before a checkpoint; `rng_state() -> {name: tensor}` and
    `set_rng_state(state)` for data-order state beyond the trainer's generator (e.g. an epoch
    permutation), saved in resumable checkpoints as rng.NAME.
    """
    modules: dict[str, torch.nn.Module]  # plain modules; the trainer moves them to the device
    optimizers: dict[str, torch.optim.Optimizer]
    items_per_step: int  # e.g. tokens or images per optimizer step, for the throughput readout
    item_name: str  # 'tok', 'img', ...
    select_metric: str | None  # evaluation metric for 'best' and early stopping (lower is better)

    def bind(self, trainer: Trainer) -> None: ...  # once, after placement, before restore and the loop
    def phases(self, step: int) -> list[Phase]: ...
    def evaluate(self) -> dict[str, float]: ...
    def on_eval(self, step: int, monitor: Monitor) -> None: ...
    def meta(self) -> dict[str, Any]: ...
    # optional: interval_state() -> dict and set_interval_state(dict): JSON values the task accumulates
    # between evaluations (the losses behind train_loss), saved with 'last' so a resumed run logs the same


def lr_multiplier(step: int, cfg: TrainConfig, elapsed: float = 0.0) -> float:
    """Linear warmup to 1, then decay to min_lr/lr at max_iters (or at max_seconds)."""
    if step < cfg.warmup_iters:
        return (step + 1) / (cfg.warmup_iters + 1)
    floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
    if cfg.schedule == "constant":
        return 1.0
    frac = min(1.0, (step - cfg.warmup_iters) / max(1, cfg.max_iters - cfg.warmup_iters))
    if cfg.time_schedule and cfg.max_seconds > 0:
        frac = max(frac, min(1.0, elapsed / cfg.max_seconds))
    shape = 0.5 * (1.0 + math.cos(math.pi * frac)) if cfg.schedule == "cosine" else 1.0 - frac
    return floor + (1.0 - floor) * shape


@dataclass
class Result:
    step: int
    best: float | None
    metrics: dict[str, float]
    stopped: str  # 'max_iters', 'early_stopping', 'target_reached', 'time_budget', 'interrupted'
    seconds: float
    metric: str | None = None  # the evaluation metric `best` refers to (the task's select_metric)


def micro_steps(grad_accum: int, world_size: int) -> int:
    """Micro-steps per optimizer step on each rank: train.grad_accum (the recipe's, on one process)
    divided by the world size, so the global batch stays batch_size x grad_accum."""
    if grad_accum % world_size:
        raise ValueError(f"train.grad_accum={grad_accum} is not divisible by the world size {world_size}: the "
                         f"global batch is batch_size x grad_accum, split over the processes; pass "
                         f"--train.grad_accum={world_size * max(1, grad_accum // world_size)} (or a multiple "
                         f"of {world_size})")
    return grad_accum // world_size


def _dist():
    import torch.distributed as dist
    return dist


class Trainer:
    def __init__(self, task: Task, cfg: TrainConfig, run: RunDir, runtime: Runtime, progress: bool = True):
        self.task, self.cfg, self.run, self.rt = task, cfg, run, runtime
        self.monitor = Monitor(run, enabled=runtime.is_main, progress=progress)
        self.step = 0
        self.best: float | None = None
        self.bad_evals = 0
        self.train_seconds = 0.0  # wall time in training steps, evaluations excluded
        self.train_cpu_seconds = 0.0  # CPU time of this process in training steps (all its threads)
        self._step_clock, self._cpu_clock = time.perf_counter(), time.process_time()
        self._stop_requested = False
        self.accum = micro_steps(cfg.grad_accum, runtime.world_size)
        if cfg.distributed == "fsdp":
            fsdp.check(task)
        self.fsdp = cfg.distributed == "fsdp" and runtime.distributed
        self._gathered = -1  # the step the plain modules were last refreshed from the FSDP shards
        self.scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.needs_scaler)
        self.wrapped: dict[str, torch.nn.Module] = {}  # the DDP wrappers or FSDP copies, by module name
        self.placed = {name: self._place(name, m) for name, m in task.modules.items()}
        # the global batch as micro-batch slots (data/shards.py): this rank draws slots rank x accum + m; the
        # batch generator is the stream of the slot being drawn, seeded seed + slot (one slot: seed, as always)
        self.shares = Shares(cfg.seed, cfg.grad_accum, runtime.rank * self.accum)
        self.generator = torch.Generator().manual_seed(cfg.seed + self.shares.slot)
        if self.shares.slot:  # the other ranks' dropout and noise differ from rank 0's (their weights do not)
            torch.manual_seed(cfg.seed + self.shares.slot)
        self._streams: dict[int, tuple] | None = None  # the other local slots' streams, made at the first step
        self._live = 0  # the local slot whose streams are live (0 between steps: what checkpoints save)
        task.bind(self)
        for opt in task.optimizers.values():
            for g in opt.param_groups:
                g.setdefault("base_lr", g["lr"])

    # ------------------------------------------------------------------ placement

    def _place(self, name: str, module: torch.nn.Module) -> torch.nn.Module:
        """Move to the device; a trained module (any parameter that needs gradients) is wrapped in
        DistributedDataParallel under torchrun (its weights broadcast from rank 0), or sharded in a copy
        with --train.distributed=fsdp, then compiled when train.compile is set."""
        module.to(self.rt.device)  # in place: the optimizers' parameters stay the module's
        if not any(p.requires_grad for p in module.parameters()):
            return module
        placed = module
        if self.fsdp:
            placed = self.wrapped[name] = fsdp.shard(module, self.task.optimizers)
            if not self.rt.is_main:  # the plain module lives on rank 0 alone (evaluation, checkpoints)
                module.to("meta")
        elif self.rt.distributed:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.rt.device.index] if self.rt.device.type == "cuda" else None
            placed = self.wrapped[name] = DistributedDataParallel(module, device_ids=ids)
        if self.cfg.compile:
            placed = torch.compile(placed)
        return placed

    def module(self, name: str) -> torch.nn.Module:
        """The task's module `name` as training calls it (compiled or wrapped as configured). A wrapped
        module whose parameters are all frozen at the moment (a GAN's D in the G phase) comes plain:
        it has no gradients to average."""
        if name in self.wrapped and not any(p.requires_grad for p in self.task.modules[name].parameters()):
            return self.task.modules[name]
        return self.placed[name]

    def _no_sync(self, sync: bool):
        """Gradient averaging off for a micro-step that is not the last of the accumulation."""
        stack = contextlib.ExitStack()
        for m in self.wrapped.values():
            if self.fsdp:  # FSDP2: reduce-scatter on the last micro-step only
                m.set_requires_gradient_sync(sync)
            elif not sync:
                stack.enter_context(m.no_sync())
        return stack

    def _switch(self, m: int) -> None:
        """Make local slot m's streams live: the batch generator, torch's CPU RNG and the task's data order
        (`rng_state`), so micro-step m draws what the process owning slot m alone would."""
        if self.accum == 1:
            return
        order = getattr(self.task, "rng_state", dict)
        if self._streams is None:  # before the first draw (after any resume), seeded from the slot and the step
            seeds = {j: self.cfg.seed + self.rt.rank * self.accum + j + 1_000_003 * self.step for j in range(self.accum)}
            self._streams = {j: (torch.Generator().manual_seed(s).get_state(),) * 2 + (order(),)
                             for j, s in seeds.items() if j}
        if m == self._live:
            return
        self._streams[self._live] = (self.generator.get_state(), torch.get_rng_state(), order())
        gen, rng, state = self._streams[m]
        self.generator.set_state(gen)
        torch.set_rng_state(rng)
        if state:
            self.task.set_rng_state(state)
        self._live, self.shares.slot = m, self.rt.rank * self.accum + m

    # ------------------------------------------------------------------ collectives (distributed only)

    def _any_rank(self, flags: list[bool]) -> list[bool]:
        """Each flag, true where it is true on any rank."""
        t = torch.tensor([float(f) for f in flags])
        _dist().all_reduce(t, op=_dist().ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def _from_main(self, code: int) -> int:
        """Rank 0's value of `code`, on every rank."""
        t = torch.tensor([code], dtype=torch.int64)
        _dist().broadcast(t, src=0)
        return int(t.item())

    def _mean_over_ranks(self, tree):
        """The mean over ranks of every number in a (nested) dict/list of floats, the same shape on each rank."""
        leaves: list[float] = []

        def flatten(x):
            if isinstance(x, dict):
                for k in sorted(x):
                    flatten(x[k])
            elif isinstance(x, (list, tuple)):
                for v in x:
                    flatten(v)
            else:
                leaves.append(float(x))

        def rebuild(x, it):
            if isinstance(x, dict):
                out = {k: rebuild(x[k], it) for k in sorted(x)}  # consumed in flatten's order
                return {k: out[k] for k in x}
            if isinstance(x, (list, tuple)):
                return [rebuild(v, it) for v in x]
            return next(it)

        flatten(tree)
        if not leaves:
            return tree
        t = torch.tensor(leaves, dtype=torch.float64)
        _dist().all_reduce(t)
        return rebuild(tree, iter((t / self.rt.world_size).tolist()))

    # ------------------------------------------------------------------ checkpoints

    def _state(self, full: bool) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors: dict[str, torch.Tensor] = {}
        for name, m in self.task.modules.items():
            tensors.update(checkpoint.module_tensors(f"module.{name}", m))
        meta = {**self.task.meta(), "step": self.step, "best": self.best, "train_seconds": self.train_seconds,
                "train_cpu_seconds": self.train_cpu_seconds}
        if full:
            optim_info = {}
            for name, opt in ({} if self.fsdp else self.task.optimizers).items():  # FSDP: in last.shards/
                t, info = checkpoint.optimizer_tensors(f"optim.{name}", opt)
                tensors.update(t)
                optim_info[name] = info
            for name, t in getattr(self.task, "rng_state", dict)().items():
                tensors[f"rng.{name}"] = t
            tensors["rng.data"] = self.generator.get_state()
            tensors["rng.torch"] = torch.get_rng_state()
            meta["resume"] = {"optimizers": optim_info, "bad_evals": self.bad_evals,
                              "interval": getattr(self.task, "interval_state", dict)(),
                              "world_size": self.rt.world_size, "fsdp": self.fsdp,
                              "scaler": self.scaler.state_dict()}
        return tensors, meta

    def _gather(self) -> None:
        """Every rank calls it (FSDP): the plain modules on rank 0 get the sharded copies' weights."""
        if self.fsdp and self._gathered != self.step:
            for name, sharded in self.wrapped.items():
                fsdp.gather(self.task.modules[name], sharded, self.rt.is_main)
            self._gathered = self.step

    def _local_streams(self) -> dict[int, dict[str, torch.Tensor]]:
        """This rank's slots' streams {local slot m: {"data", "torch", task rng_state names}} between steps (slot 0
        live; the others as `_switch` parked them, none before their first draw: they would be re-made alike)."""
        live = {"data": self.generator.get_state(), "torch": torch.get_rng_state(),
                **getattr(self.task, "rng_state", dict)()}
        parked = {m: {"data": gen, "torch": rng, **order} for m, (gen, rng, order) in (self._streams or {}).items()}
        return {0: live, **parked}

    def _slot_streams(self) -> dict[str, torch.Tensor]:
        """Every rank calls it: the streams of every slot of the global batch, as rng.NAME (slot 0) and
        rng{S}.NAME (slot S), so a resume continues each slot exactly, on any number of processes."""
        mine = {f"rng{self.rt.rank * self.accum + m or ''}.{k}": v
                for m, streams in self._local_streams().items() for k, v in streams.items()}
        if not self.rt.distributed:
            return mine
        every = [None] * self.rt.world_size
        _dist().all_gather_object(every, sorted(mine))  # names only: the tensors follow as flat uint8/int64
        out = {}
        for rank, names in enumerate(every):
            for name in names:
                t = mine[name].flatten() if rank == self.rt.rank else None
                meta = [(t.numel(), str(t.dtype)) if t is not None else None]
                _dist().broadcast_object_list(meta, src=rank)
                n, dtype = meta[0]
                buf = t if t is not None else torch.zeros(n, dtype=getattr(torch, dtype.split(".")[1]))
                _dist().broadcast(buf, src=rank)
                out[name] = buf
        return out

    def _restore_streams(self, tensors: dict[str, torch.Tensor]) -> None:
        """Each local slot continues its saved streams (the slot's, whichever rank saved it); a slot the
        checkpoint lacks starts fresh streams seeded from the slot and the step."""
        order = getattr(self.task, "rng_state", dict)
        fresh = {}
        for m in range(self.accum):
            slot = self.rt.rank * self.accum + m
            prefix = f"rng{slot or ''}."
            saved = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if "data" in saved:
                gen, rng = saved.pop("data"), saved.pop("torch")
            else:
                seed = self.cfg.seed + slot + 1_000_003 * self.step
                gen = rng = torch.Generator().manual_seed(seed).get_state()
            if m == 0:
                self.generator.set_state(gen)
                torch.set_rng_state(rng)
                if saved:
                    self.task.set_rng_state(saved)
            else:
                fresh[m] = (gen, rng, saved or order())
        self._streams = fresh or None
        self._live, self.shares.slot = 0, self.rt.rank * self.accum

    def save(self, which: str) -> None:
        """'best' (rank 0 alone, after `_gather`) or 'last' (every rank calls it: under FSDP the sharded
        state is written first, and every rank's RNG streams are gathered)."""
        last = self.run.checkpoint("last")
        if which == "last" and self.fsdp:
            self._gather()
            fsdp.save(last, self.step, self.wrapped, self.task.optimizers, self.rt.is_main)
        streams = self._slot_streams() if which == "last" else {}
        if not self.rt.is_main:
            return
        before = getattr(self.task, "before_save", None)  # e.g. a GAN's EMA generator statistics
        if before is not None:
            before()
        tensors, meta = self._state(full=(which == "last"))
        checkpoint.save(self.run.checkpoint(which), {**tensors, **streams}, meta)
        if which == "last" and self.fsdp:
            fsdp.prune(last, self.step)

    def restore(self, path) -> None:
        """Continue from a 'last' checkpoint: weights, optimizers, RNG, step, best, patience."""
        tensors, meta = checkpoint.load(path)
        if "resume" not in meta:
            raise checkpoint.CheckpointError(f"{path}: has no optimizer state; resume from last.safetensors")
        resume = meta["resume"]
        if resume.get("fsdp", False) != self.fsdp:
            raise checkpoint.CheckpointError(
                f"{path}: trained with --train.distributed=fsdp (its optimizer state is in "
                f"{Path(path).with_suffix('.shards')}); resume it with --train.distributed=fsdp under torchrun"
                if resume.get("fsdp") else f"{path}: trained without FSDP (DDP or one process); resume it with "
                "--train.distributed=ddp")
        for name, m in self.task.modules.items():
            if name in self.wrapped and self.fsdp and not self.rt.is_main:
                continue  # on the meta device: the shards come from fsdp.restore
            p = f"module.{name}."
            m.load_state_dict({k[len(p):]: v for k, v in tensors.items() if k.startswith(p)})
        self.step, self.best = meta["step"], meta.get("best")
        if self.fsdp:
            fsdp.restore(Path(path), self.step, self.wrapped, self.task.optimizers)
            self._gathered = self.step
        for name, opt in ({} if self.fsdp else self.task.optimizers).items():
            checkpoint.restore_optimizer(opt, f"optim.{name}", tensors, resume["optimizers"][name])
        if resume.get("scaler"):
            self.scaler.load_state_dict(resume["scaler"])
        self._restore_streams(tensors)
        self.train_seconds = meta.get("train_seconds", 0.0)
        self.train_cpu_seconds = meta.get("train_cpu_seconds", 0.0)
        self.bad_evals = meta["resume"]["bad_evals"]
        if hasattr(self.task, "set_interval_state"):  # e.g. the losses behind the next logged train_loss
            self.task.set_interval_state(meta["resume"].get("interval", {}))

    # ------------------------------------------------------------------ loop

    def _one_step(self) -> dict[str, float]:
        mult = lr_multiplier(self.step, self.cfg, self._elapsed())
        for opt in self.task.optimizers.values():
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * mult
        logs: dict[str, float] = {"lr": self.cfg.lr * mult}
        for opt_names, loss_fn in self.task.phases(self.step):
            opts = [self.task.optimizers[n] for n in opt_names]
            opt_name = opt_names[0]
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            bad = None
            for i in range(self.accum):
                self._switch(i)
                with self._no_sync(i == self.accum - 1):
                    with self.rt.autocast():
                        loss, extra = loss_fn()
                    if not torch.isfinite(loss):
                        bad = bad or f"{opt_name} loss is {loss.item()}"
                        if not self.rt.distributed:
                            raise TrainingDiverged(self._diverged_message(bad))
                    self.scaler.scale(loss / self.accum).backward()  # every rank runs every backward
                for k, v in extra.items():
                    logs[k] = logs.get(k, 0.0) + v / self.accum
            if self.rt.distributed and self._any_rank([bad is not None])[0]:
                raise TrainingDiverged(self._diverged_message(bad or f"{opt_name} loss is not finite on another rank"))
            params = [p for opt in opts for g in opt.param_groups for p in g["params"] if p.grad is not None]
            if self.cfg.grad_clip > 0 and params:
                for opt in opts:  # fp16: the scaled gradients back to their true size before clipping
                    self.scaler.unscale_(opt)
                norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
                norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP: a DTensor
                if not torch.isfinite(norm) and not self.scaler.is_enabled():  # fp16 overflow: step skipped
                    raise TrainingDiverged(self._diverged_message(f"{opt_name} gradient norm is {norm.item()}"))
                logs[f"{opt_name}_grad_norm"] = norm.item()
            for opt in opts:
                self.scaler.step(opt)  # opt.step(), unless fp16 gradients overflowed
        self.scaler.update()
        self._switch(0)
        after = getattr(self.task, "after_step", None)
        if after is not None:
            after(self.step)
        return logs

    def _elapsed(self) -> float:
        """Training time so far (evaluations excluded) on the configured clock."""
        if self.cfg.clock == "cpu":
            return self.train_cpu_seconds + time.process_time() - self._cpu_clock
        return self.train_seconds + time.perf_counter() - self._step_clock

    def _diverged_message(self, what: str) -> str:
        last = self.run.checkpoint("last")
        keep = (f"the last good checkpoint is {last}" if last.exists()
                else "no checkpoint was written before this step")
        return (f"training diverged at step {self.step}: {what}; stopped, {keep}. "
                "Try a lower --train.lr or --train.grad_clip=1.0")

    def _evaluate(self) -> dict[str, float]:
        """Every rank calls it; rank 0 alone evaluates, logs and saves (the others get {})."""
        self.train_seconds += time.perf_counter() - self._step_clock
        self.train_cpu_seconds += time.process_time() - self._cpu_clock
        metrics: dict[str, float] = {}
        if self.rt.distributed and hasattr(self.task, "interval_state"):  # train_loss over all ranks' batches
            state = self._mean_over_ranks(self.task.interval_state())
            if not self.rt.is_main:
                state = {k: type(v)() for k, v in state.items()}  # forgotten here: rank 0 logs it
            self.task.set_interval_state(state)
        self._gather()
        if self.rt.is_main:
            metrics = self._evaluate_main()
        self.save("last")
        self._step_clock, self._cpu_clock = time.perf_counter(), time.process_time()
        return metrics

    def _evaluate_main(self) -> dict[str, float]:
        metrics = {**self.task.evaluate(), "train_seconds": self.train_seconds,
                   "train_cpu_seconds": self.train_cpu_seconds}
        self.task.on_eval(self.step, self.monitor)
        key = self.task.select_metric
        improved = False
        if key is not None and key in metrics:
            improved = self.best is None or metrics[key] < self.best
            if improved:
                self.best, self.bad_evals = metrics[key], 0
            else:
                self.bad_evals += 1
        # the row goes out before the checkpoints: a crash between the two loses nothing, since a resumed
        # run drops the rows past its checkpoint and logs them again
        self.monitor.log(self.step, metrics, prefix="eval")
        if key is not None and key in metrics:
            if improved:
                self.save("best")
        elif key is None:
            self.save("best")  # no selection metric (e.g. GANs): newest is 'best'
        self.monitor.plot()  # then every rank saves 'last' (`_evaluate`)
        return metrics

    def request_stop(self) -> None:
        """Finish this step, save a 'last' checkpoint and return (what Ctrl-C does)."""
        self._stop_requested = True

    def _on_sigint(self, signum, frame):
        if self._stop_requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.request_stop()
        self.monitor.write("\nCtrl-C: finishing this step, saving a checkpoint and exiting "
                           "(press again to abort without saving)")

    def fit(self) -> Result:
        cfg = self.cfg
        t0 = time.perf_counter()
        metrics: dict[str, float] = {}
        stopped = "max_iters"
        old_handler = None
        try:
            old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: Ctrl-C handling stays as it was
            pass
        try:
            self.monitor.start(total=None if cfg.max_seconds else cfg.max_iters, initial=self.step)
            self._step_clock, self._cpu_clock = time.perf_counter(), time.process_time()
            last_time, last_step = time.perf_counter(), self.step
            while self.step < cfg.max_iters:
                logs = self._one_step()
                self.step += 1
                self.monitor.advance()
                if self.step % cfg.log_interval == 0 or self.step == cfg.max_iters:
                    if self.rt.distributed:  # the logged losses are the mean over the ranks' batches
                        logs = self._mean_over_ranks(logs)
                    now = time.perf_counter()
                    rate = (self.step - last_step) * self.task.items_per_step / max(now - last_time, 1e-9)
                    last_time, last_step = now, self.step
                    self.monitor.log(self.step, {**logs, f"{self.task.item_name}_per_s": rate}, prefix="train")
                    self.monitor.status(logs, rate, self.task.item_name)
                if self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters:
                    metrics = self._evaluate()
                    code = 0
                    key = self.task.select_metric
                    if cfg.patience and self.bad_evals >= cfg.patience:
                        code = 1
                    elif cfg.stop_at is not None and key in metrics and metrics[key] <= cfg.stop_at:
                        code = 2
                    if self.rt.distributed:  # rank 0 evaluated: its decision is everyone's
                        code = self._from_main(code)
                    if code:
                        stopped = "early_stopping" if code == 1 else "target_reached"
                        break
                out_of_time = bool(cfg.max_seconds) and self._elapsed() >= cfg.max_seconds
                stop_requested = self._stop_requested
                if self.rt.distributed:  # any rank's Ctrl-C or budget stops all of them at this step
                    out_of_time, stop_requested = self._any_rank([out_of_time, stop_requested])
                if out_of_time:
                    stopped = "time_budget"
                    break
                if stop_requested:
                    stopped = "interrupted"
                    break
            if stopped in ("time_budget", "interrupted") and self.step % cfg.eval_interval:
                if stopped == "time_budget":
                    metrics = self._evaluate()  # which saves 'last'
                else:
                    self.save("last")
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            self.monitor.close()
        return Result(self.step, self.best, metrics, stopped, time.perf_counter() - t0, self.task.select_metric)
