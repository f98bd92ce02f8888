"""Checks that a checkpoint or a run folder holds what its family needs, before anything is built.

    validate.checkpoint_meta(meta, path)   # genforge.load / sample / eval / serve: config, tokenizer, labels
    validate.resume(run_dir, family)       # train --resume: config.json against checkpoints/last.safetensors

Every problem is a `CheckpointError` (a ValueError) whose message names the file, so the CLI prints
one line. Tensor shapes against the metadata are checked where the model is built
(`checkpoint.load_module`). Tests: pytest tests/test_validate.py
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .checkpoint import CheckpointError, read_meta

REQUIRED = {"gpt": ("tokenizer",), "classifier": ("labels", "featurizer"), "imageclf": ("labels",),  # beyond config.model
            "text2image": ("caption_vocab", "vqvae")}


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON file that must hold an object; errors name the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: holds a JSON {type(doc).__name__}, not an object")
    return doc


def config_sections(doc: dict, where: str) -> dict[str, dict]:
    """doc["config"]: an object of objects (one per section), with a `model` section."""
    cfg = doc.get("config")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{where}: `config` is {_kind(cfg)}, not an object of config sections")
    for name, values in cfg.items():
        if not isinstance(values, dict):
            raise CheckpointError(f"{where}: config.{name} is {_kind(values)}, not an object")
    if "model" not in cfg:
        raise CheckpointError(f"{where}: `config` has no `model` section")
    return cfg


def _kind(value) -> str:
    return "missing" if value is None else f"a JSON {type(value).__name__.replace('str', 'string')}"


def checkpoint_meta(meta: dict[str, Any], path: str | os.PathLike) -> None:
    """The metadata of a checkpoint describes a model its family can build."""
    from . import config, families
    family = meta.get("family")
    if family not in families.FAMILIES:
        raise CheckpointError(f"{path}: unknown model family {family!r} in the metadata "
                              f"(genforge knows {', '.join(families.FAMILIES)})")
    if family == "classifier" and "ensemble" in meta:
        members = (meta["ensemble"] or {}).get("members") if isinstance(meta["ensemble"], dict) else None
        if not isinstance(members, list) or not members:
            raise CheckpointError(f"{path}: `ensemble.members` is not a list of classifier metadata")
        for i, m in enumerate(members):
            if not isinstance(m, dict):
                raise CheckpointError(f"{path}: ensemble.members[{i}] is not an object")
            checkpoint_meta({"family": family, **m}, f"{path} (ensemble member {i})")
        return
    cfg = config_sections(meta, str(path))
    for name, section in families.get(family).sections().items():
        if name in cfg:
            try:
                config.from_dict(type(section), cfg[name], name)
            except ValueError as e:
                raise CheckpointError(f"{path}: metadata config: {e}") from None
    for key in REQUIRED.get(family, ()):
        if key not in meta:
            raise CheckpointError(f"{path}: the metadata has no `{key}` (a {family} checkpoint needs one)")
    if family == "gpt":
        size = tokenizer_size(meta["tokenizer"], f"{path}: tokenizer")
        vocab = cfg["model"].get("vocab_size")
        if vocab != size:
            raise CheckpointError(f"{path}: the tokenizer has {size} tokens but config.model.vocab_size is "
                                  f"{vocab}; the metadata does not describe this model")
    if family in ("classifier", "imageclf"):
        labels = meta["labels"]
        if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) for x in labels)):
            raise CheckpointError(f"{path}: `labels` must be a list of at least two class names")
    if family == "classifier":
        if not isinstance(meta["featurizer"], dict):
            raise CheckpointError(f"{path}: `featurizer` is {_kind(meta['featurizer'])}, not an object")


def tokenizer_size(d, where: str) -> int:
    """The vocabulary size of a saved tokenizer (see data/tokenizers.py), checking its structure."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{where} is {_kind(d)}, not an object")
    kind = d.get("kind")
    if kind == "labelled":
        labels = d.get("labels")
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
            raise CheckpointError(f"{where}: `labels` must be a non-empty list of label names")
        return tokenizer_size(d.get("base"), f"{where}.base") + 1 + len(labels)
    if kind == "char":
        chars = d.get("chars")
        if not isinstance(chars, str) or len(set(chars)) < 2:
            raise CheckpointError(f"{where}: a character vocabulary needs at least 2 distinct characters, "
                                  f"got {chars!r}"[:300])
        return len(set(chars))
    if kind == "bpe":
        inner = d.get("tokenizer")
        vocab = inner.get("model", {}).get("vocab") if isinstance(inner, dict) else None
        if not isinstance(vocab, dict) or len(vocab) < 2:
            raise CheckpointError(f"{where}: a BPE tokenizer needs `tokenizer.model.vocab` (an object of tokens)")
        added = [t.get("id") for t in inner.get("added_tokens") or [] if isinstance(t, dict)]
        ids = set(vocab.values()) | {i for i in added if isinstance(i, int)}
        return len(ids)
    raise CheckpointError(f"{where}: unknown tokenizer kind {kind!r} (expected 'char' or 'bpe')")


def resume(out: str | os.PathLike | None, family: str, model_overrides: dict | None = None) -> None:
    """Before `train FAMILY --resume --out RUN`: RUN/config.json is a run of FAMILY whose model section,
    with the command line's --model.* overrides, matches the last checkpoint's."""
    if out is None:
        raise CheckpointError("--resume needs --out RUN (the run folder to continue)")
    run = Path(out)
    last = run / "checkpoints" / "last.safetensors"
    saved = read_json_object(run / "config.json")
    if "family" in saved and saved["family"] != family:
        raise CheckpointError(f"--resume: {run} is a {saved['family']!r} run, not a {family!r} run; "
                              f"use `genforge train {saved['family']} --resume --out {run}`")
    if "ensemble" in saved:
        raise CheckpointError(f"--resume: {run} is an ensemble; there is nothing to train")
    cfg = config_sections(saved, str(run / "config.json"))
    if not last.exists():
        raise CheckpointError(f"--resume: {last} does not exist")
    meta = read_meta(last)
    checkpoint_meta(meta, last)
    mine, theirs = cfg["model"], meta["config"]["model"]
    if model_overrides:
        import dataclasses

        from . import config, families
        section = type(families.get(family).sections()["model"])
        try:
            mine = dataclasses.asdict(config.update(config.from_dict(section, mine, "model"), model_overrides, "model"))
        except config.ConfigError as e:
            raise CheckpointError(f"--resume: {e}") from None
        theirs = dataclasses.asdict(config.from_dict(section, theirs, "model"))
    for key in sorted(k for k in set(mine) | set(theirs) if "dropout" not in k):  # dropout changes no shape
        if mine.get(key) != theirs.get(key):
            raise CheckpointError(f"--resume: model.{key}={mine.get(key)!r} ({run / 'config.json'} and the command "
                                  f"line) but {last} was trained with {theirs.get(key)!r}; a resumed run keeps its "
                                  "model: restore config.json, drop the --model override, or start a new run")
