"""Configuration: dataclass sections, presets and `--section.key=value` overrides.

Every family describes its run as a few dataclass sections (`model`, `data`, `train`, ...).
Values resolve in this order: dataclass defaults -> preset -> command-line overrides. Every
override is type-checked; an unknown section or key is an error that suggests the closest name.
The resolved config is saved as JSON in the run directory and inside every checkpoint.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A bad configuration value, key, section or preset (the message names which)."""


def closest(name: str, choices) -> str:
    """' (did you mean X?)' when a close match exists, else ''."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert `value` (often a string from the command line) to the field type `typ`."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be None")
    if origin is typing.Literal:
        choices = typing.get_args(typ)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {list(choices)}{closest(str(value), map(str, choices))}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.strip("()[]").split(",") if v.strip()]
        inner = typing.get_args(typ)[0] if typing.get_args(typ) else str
        return origin(_coerce(v.strip() if isinstance(v, str) else v, inner, where) for v in value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            try:
                f = float(value)
            except ValueError:
                f = None
            if f is not None and f.is_integer():
                return int(f)
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(f):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return f
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def update(section, values: dict[str, Any], where: str):
    """A copy of dataclass `section` with `values` applied, each type-checked."""
    types_ = _field_types(type(section))
    changes = {}
    for key, value in values.items():
        if key not in types_:
            raise ConfigError(f"unknown config key '{where}.{key}'{closest(key, types_)}; "
                              f"valid keys: {', '.join(sorted(types_))}")
        changes[key] = _coerce(value, types_[key], f"{where}.{key}")
    new = dataclasses.replace(section, **changes)
    check = getattr(new, "validate", None)
    if check is not None:
        check()
    return new


def parse_overrides(args: list[str]) -> dict[str, dict[str, str]]:
    """['--train.max_iters=10', '--model.n_layer', '4'] -> {'train': {'max_iters': '10'}, ...}."""
    out: dict[str, dict[str, str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=")[0]:
            raise ConfigError(f"unexpected argument {arg!r}: overrides look like --section.key=value")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override {arg} has no value")
            key, value = arg[2:], args[i + 1]
            i += 1
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
        i += 1
    return out


def resolve(sections: dict[str, Any], presets: dict[str, dict[str, dict[str, Any]]],
            preset: str | None, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """defaults -> preset -> overrides, for a dict of {section name: dataclass instance}."""
    out = dict(sections)
    layers = []
    if preset is not None:
        if preset not in presets:
            raise ConfigError(f"unknown preset '{preset}'{closest(preset, presets)}; "
                              f"available: {', '.join(sorted(presets))}")
        layers.append(presets[preset])
    layers.append(overrides)
    for layer in layers:
        for name, values in layer.items():
            if name not in out:
                raise ConfigError(f"unknown config section '{name}'{closest(name, out)}; "
                                  f"valid sections: {', '.join(out)}")
            out[name] = update(out[name], values, name)
    return out


def to_dict(sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: dataclasses.asdict(sec) for name, sec in sections.items()}


def from_dict(cls, values: dict[str, Any], where: str):
    """Rebuild a dataclass from saved JSON; keys saved by a newer version are an error."""
    return update(cls(), values, where)


def from_saved(sections: dict[str, Any], saved: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every section of a saved config (RUN/config.json's "config", a checkpoint's meta) rebuilt as its
    dataclass; `sections` gives the classes."""
    return {name: from_dict(type(sec), saved[name], name) for name, sec in sections.items()}


def dumps(sections: dict[str, Any]) -> str:
    return json.dumps(to_dict(sections), indent=2)


# sampling settings, checked the same way by the torch samplers and the torch-free ONNX runtime
def check_guidance(g: float, what: str = "guidance") -> None:
    """Classifier-free guidance scales: a finite number in [0, 100] (torch pipelines and the ONNX runtime)."""
    if not (isinstance(g, (int, float)) and math.isfinite(g) and 0 <= g <= 100):
        raise ValueError(f"{what}: the guidance scale must be a number in [0, 100], got {g!r}")


def check_sampling(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if temperature < 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k <= 0:
        raise ValueError(f"top_k must be positive, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
