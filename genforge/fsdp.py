"""FSDP2 for the trainer (`--train.distributed=fsdp` under torchrun): shard, gather, checkpoint.

    torchrun --standalone --nproc-per-node=2 -m genforge train gpt --data input.txt --train.distributed=fsdp

The trainer shards a *copy* of each trained module with `fully_shard` (per-parameter FSDP2): every
transformer `Block` is one unit, then the root, which holds what is left (the embeddings, the final
norm and the head, so a tied embedding and head stay one parameter in one unit). The task's optimizers
are pointed at the copy's sharded parameters; the task's own modules stay plain on rank 0 (the
trainer moves the other ranks' to the meta device) and are refreshed from a full state dict (gathered
by every rank, held by rank 0) before each evaluation and checkpoint, so rank 0 evaluates and writes
the usual safetensors checkpoint that one CPU process samples from.

For resume, the sharded weights and optimizer state go through `torch.distributed.checkpoint` into
`checkpoints/last.shards/stepNNNNNNN/`: one safetensors file per rank (its shard offsets in the
header, JSON) and `param_groups.json`, never a pickle. A folder per step, the older ones removed
only after `last.safetensors` names the new step, so a crash between the two writes leaves a
consistent pair.
"""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError

Modules = dict[str, torch.nn.Module]  # the sharded copies, by the task's module names
Optimizers = dict[str, torch.optim.Optimizer]


def check(task: Any) -> None:
    """A one-line ValueError for what FSDP does not run: families that do not declare `shardable`
    (BatchNorm GANs, classifiers whose losses read the plain module), and Muon."""
    if not getattr(task, "shardable", False):
        family = task.meta().get("family", type(task).__name__)
        raise ValueError(f"--train.distributed=fsdp: the {family} family cannot be sharded (its training reads "
                         "the plain modules, or BatchNorm statistics); use --train.distributed=ddp")
    if "muon" in task.optimizers:
        raise ValueError("--train.distributed=fsdp does not run with --train.optimizer=muon (Muon orthogonalises "
                         "whole matrices, FSDP holds shards of them); use adamw or --train.distributed=ddp")


def shard(module: torch.nn.Module, optimizers: Optimizers) -> torch.nn.Module:
    """A sharded copy of `module` (per Block, then the root); the optimizers' parameters of `module`
    are replaced by the copy's, by name (before the first step, while their state is empty)."""
    from torch.distributed.fsdp import fully_shard

    from .models.gpt import Block
    sharded = copy.deepcopy(module)
    for sub in sharded.modules():
        if isinstance(sub, Block):
            fully_shard(sub)
    fully_shard(sharded)
    names = {id(p): n for n, p in module.named_parameters()}
    new = dict(sharded.named_parameters())
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["params"] = [new[names[id(p)]] if id(p) in names else p for p in group["params"]]
    return sharded


def gather(plain: torch.nn.Module, sharded: torch.nn.Module, is_main: bool) -> None:
    """Every rank calls it: the full weights of `sharded`, loaded by rank 0 into `plain`."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if is_main:
        plain.load_state_dict(full)  # copied into the plain module's tensors, on its device


def _flat(sharded: Modules, optimizers: Optimizers) -> tuple[dict[str, torch.Tensor], dict[str, list]]:
    """{name: tensor} of every module's and optimizer's sharded state, and the optimizers' param_groups."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict
    holder = torch.nn.ModuleDict(sharded)  # the optimizers' parameters, by one set of names
    once = {n for n, _ in holder.named_parameters()} | {n for n, _ in holder.named_buffers()}  # a tied one once
    tensors = {f"module.{k}": v for k, v in get_model_state_dict(holder).items() if k in once}
    groups = {}
    for name, opt in optimizers.items():
        sd = get_optimizer_state_dict(holder, opt)
        tensors.update({f"optim.{name}.{p}.{k}": v for p, s in sd["state"].items() for k, v in s.items()})
        groups[name] = sd["param_groups"]
    return tensors, groups


def step_folder(last: Path, step: int) -> Path:
    return last.with_suffix(".shards") / f"step{step:07d}"


def save(last: Path, step: int, sharded: Modules, optimizers: Optimizers, is_main: bool) -> None:
    """Every rank calls it: write the sharded state of `step` beside the checkpoint `last`."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    folder = step_folder(last, step)
    if is_main:
        shutil.rmtree(folder, ignore_errors=True)
    dist.barrier()
    tensors, groups = _flat(sharded, optimizers)
    dcp.save(tensors, storage_writer=dcp.HuggingFaceStorageWriter(str(folder), save_distributed=True))
    if is_main:
        (folder / "param_groups.json").write_text(json.dumps(groups))
    dist.barrier()


def prune(last: Path, keep: int) -> None:
    """Rank 0, after `last` names step `keep`: remove the other steps' folders."""
    for old in last.with_suffix(".shards").glob("step*"):
        if old != step_folder(last, keep):
            shutil.rmtree(old, ignore_errors=True)


def restore(last: Path, step: int, sharded: Modules, optimizers: Optimizers) -> None:
    """Every rank calls it: load the sharded state of `step` (resharded by DCP if the world size changed)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)
    folder = step_folder(last, step)
    if not (folder / "param_groups.json").exists():
        raise CheckpointError(f"{last}: its FSDP state {folder} is missing; resume a run trained with "
                              "--train.distributed=fsdp, with the same flag")
    tensors, _ = _flat(sharded, optimizers)  # the layout to load into (optimizer state made by a zero step)
    dcp.load(tensors, storage_reader=dcp.HuggingFaceStorageReader(str(folder)))
    groups = json.loads((folder / "param_groups.json").read_text())
    holder = torch.nn.ModuleDict(sharded)
    set_model_state_dict(holder, {k[7:]: v for k, v in tensors.items() if k.startswith("module.")},
                         options=StateDictOptions(strict=False))  # a tied weight comes once
    for name, opt in optimizers.items():
        state: dict[str, dict[str, torch.Tensor]] = {}
        for k, v in tensors.items():
            if k.startswith(f"optim.{name}."):
                param, key = k[len(name) + 7:].rsplit(".", 1)
                state.setdefault(param, {})[key] = v
        set_optimizer_state_dict(holder, opt, {"state": state, "param_groups": groups[name]})
