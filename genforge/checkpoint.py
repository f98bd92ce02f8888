"""Checkpoints: the only place weights are written and read.

A checkpoint is one `.safetensors` file. Its tensors are the model weights (and, for resumable
checkpoints, optimizer state and RNG state); its header metadata holds one JSON document that
describes everything else (family, configs, step, tokenizer, genforge version). Nothing is ever
unpickled, so a checkpoint from a stranger cannot run code. Writes go to a temporary file that is
renamed into place, so a crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import glob
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = "genforge-checkpoint/1"
META_KEY = "genforge"


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, foreign or from an incompatible version."""


def _dedupe(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tied weights share storage, which safetensors refuses: keep one name, record the rest."""
    seen: dict[tuple, str] = {}
    out, aliases = {}, {}
    for name, t in tensors.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        out[name] = t.detach().to("cpu").contiguous()
    return out, aliases


def save(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Atomically write `tensors` and the JSON-able `meta` to `path`."""
    from . import __version__
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, aliases = _dedupe(tensors)
    doc = {"format": FORMAT, "genforge_version": __version__, **meta, "aliases": aliases}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={META_KEY: json.dumps(doc)})
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint gets a normal file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def remove_stale_tmp(folder: str | os.PathLike) -> list[str]:
    """Delete the `NAME.safetensors.*.tmp` files that `save` left in `folder` when it was killed mid-write."""
    removed = []
    for tmp in sorted(glob.glob(os.path.join(glob.escape(str(folder)), "*.safetensors.*.tmp"))):
        try:
            os.unlink(tmp)
            removed.append(tmp)
        except FileNotFoundError:  # another process cleaned it first
            pass
    return removed


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON document of a checkpoint, without reading its tensors."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix in (".pt", ".pth", ".bin", ".pkl", ".ckpt"):
        raise CheckpointError(f"{path}: pickle-based checkpoints are never loaded (they can run "
                              "code); genforge reads .safetensors files only")
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            size = path.stat().st_size
            if n <= 0 or n > size - 8:
                raise CheckpointError(f"{path}: not a safetensors file, or truncated (header "
                                      f"claims {n} bytes, file has {size})")
            header = json.loads(f.read(n))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint header ({e})") from None
    raw = (header.get("__metadata__") or {}).get(META_KEY)
    if raw is None:
        raise CheckpointError(f"{path}: a safetensors file, but not a genforge checkpoint "
                              "(no genforge metadata); for GPT-2 weights use --init-from hf:DIR")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: the genforge metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the genforge metadata is a JSON {type(meta).__name__}, not an object")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {meta.get('format')!r}, "
                              f"this genforge reads {FORMAT}")
    return meta


def load(path: str | os.PathLike, prefix: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta). With `prefix`, only tensors named `prefix.*`, with the prefix removed."""
    meta = read_meta(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({e})") from None
    for alias, orig in meta.get("aliases", {}).items():
        if orig in tensors:
            tensors[alias] = tensors[orig]
    if prefix is not None:
        p = prefix + "."
        tensors = {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}
    return tensors, meta


class TensorMismatch(CheckpointError):
    """The tensors of a checkpoint do not fit the model its metadata describes."""


def load_module(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: str | os.PathLike | None = None,
                prefix: str = "") -> None:
    """`module.load_state_dict(tensors)`, with a one-line error naming the file and the first tensor that
    is missing, unexpected or of another shape than the metadata's config makes (layers, vocabulary)."""
    where = f"{path}: " if path is not None else ""
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    hint = "the checkpoint's tensors do not match its metadata (config.model)"
    if missing or unexpected:
        names = ([f"missing tensor {prefix}{k}" for k in missing[:1]] + [f"unexpected tensor {prefix}{k}"
                                                                       for k in unexpected[:1]])
        more = len(missing) + len(unexpected) - len(names)
        raise TensorMismatch(f"{where}{hint}: {', '.join(names)}" + (f" (and {more} more)" if more else ""))
    for k, t in expected.items():
        if tuple(tensors[k].shape) != tuple(t.shape):
            raise TensorMismatch(f"{where}{hint}: tensor {prefix}{k} has shape {list(tensors[k].shape)}, "
                                 f"the config makes {list(t.shape)}")
    module.load_state_dict(tensors)


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors and a JSON-able remainder."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{idx}.{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"scalars": scalars, "param_groups": sd["param_groups"]}


def restore_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], info: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    p = prefix + "."
    for name, t in tensors.items():
        if name.startswith(p):
            idx, k = name[len(p):].split(".", 1)
            state.setdefault(int(idx), {})[k] = t
    for idx, vals in info["scalars"].items():
        state.setdefault(int(idx), {}).update(vals)
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
