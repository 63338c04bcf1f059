"""Config is validated data: YAML/dicts become typed dataclasses at the edge.

:func:`from_dict` builds a (nested) dataclass from a mapping and raises a `ConfigError`
naming the offending key path (``plan.training.patch_size``) and what is allowed: unknown
keys list the known ones, ``Literal`` fields list their values, numbers and lists are
type-checked. No code is ever evaluated from a config.
"""

from __future__ import annotations

import dataclasses
import types
import math
import re
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from medseg.errors import MedsegError


class ConfigError(MedsegError):
    """A config/plan value that is missing, unknown or of the wrong type."""


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


#: Exponent notation without a dot (``1e-3``, ``5E+2``), which YAML 1.1 (PyYAML) leaves a string.
_YAML11_FLOAT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not allowed; choose one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in (a for a in args if a is not type(None)):
            try:
                return _convert(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of the allowed forms")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)} ({value!r})")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        conv = [_convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(conv) if origin is tuple else conv
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_convert(k, kt, f"{where} key"): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            value = float(value)  # PyYAML (YAML 1.1) reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from ``data``; errors name the key path and the allowed values."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: required key {name!r} is missing")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(where)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain YAML-able data (lists, not tuples) from a dataclass tree."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file (safe loader) with a clear error for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; check the path")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from e


def apply_overrides(data: Any, overrides: "list[str] | tuple[str, ...]", where: str = "--set") -> dict:
    """A copy of config ``data`` (a mapping, or None for the defaults) with ``KEY=VALUE``
    overrides applied in order: ``KEY`` is a dotted path (``inference.tta``), ``VALUE`` is read
    as YAML (``20``, ``none``, ``[0.8, 0.8]``, ``null``). Missing intermediate mappings are
    created; whether the key exists is checked by the config class that reads the result
    (:func:`from_dict`), so an unknown key gets that message. Raises :class:`ConfigError` for an
    item without ``=``, an empty key, a path through a non-mapping value, or broken YAML."""
    import copy

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the config is not a mapping of keys, so it cannot be overridden")
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = str(item).partition("=")
        parts = [p.strip() for p in key.split(".")]
        if not sep or not all(parts):
            raise ConfigError(f"{where} {item!r}: expected KEY=VALUE with a dotted key, e.g. "
                              "--set epochs=20 or --set inference.tta=none")
        try:
            value = yaml.safe_load(text) if text.strip() else None
            if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value.strip()):
                value = float(value)  # YAML 1.1 reads 2e-4 (no dot) as a string
        except yaml.YAMLError as e:
            raise ConfigError(f"{where} {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)})") from e
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{where} {item!r}: {'.'.join(parts[:i + 1])} is a value ({nxt!r}), not a "
                                  "section with keys")
            node = nxt
        node[parts[-1]] = value
    return out
