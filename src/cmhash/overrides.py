"""The one parser of ``key=value`` settings: ``--set train.epochs=5``, sweep specs, ``--param m=4``.

Values are YAML scalars (``5``, ``0.3``, ``true``, ``null``, ``[16, 32]``, text) and are checked
against the type of the field they set (a dataclass field, or a keyword argument's annotation),
so ``train.epochs=abc`` or ``train.epochs=2.5`` is an error that names the key and the type.
"""
from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import Any

import yaml

from .utils import CmhashError

SECTIONS = ("data", "backbone", "train", "method")


def parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_pairs(items, what: str = "setting") -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": 1, "c": "x"}``."""
    out = {}
    for item in items:
        if "=" not in str(item):
            raise CmhashError(f"{what} {item!r} is not of the form key=value")
        key, value = str(item).split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def nest(flat: dict, where: str = "override") -> dict:
    """``{"train.epochs": 5}`` -> ``{"train": {"epochs": 5}}``; a nested ``{"train": {...}}`` passes."""
    out: dict = {}
    for key, value in flat.items():
        if isinstance(value, dict) and key in SECTIONS:
            for k2, v2 in value.items():
                out.setdefault(key, {})[str(k2)] = v2
            continue
        parts = str(key).split(".")
        if len(parts) != 2 or parts[0] not in SECTIONS:
            raise CmhashError(f"{where}: key {key!r} must be one of {', '.join(s + '.X' for s in SECTIONS)}")
        out.setdefault(parts[0], {})[parts[1]] = value
    return out


def flatten(nested: dict) -> dict:
    return {f"{sec}.{k}": v for sec, d in nested.items() for k, v in d.items()}


def _name(hint) -> str:
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(value: Any, hint, key: str) -> Any:
    """``value`` as the type ``hint`` asks for, or a CmhashError naming ``key`` and the type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for h in options:
            if h is type(None):
                continue
            try:
                return coerce(value, h, key)
            except CmhashError:
                pass
        raise CmhashError(f"{key}: expected {' or '.join(_name(h) for h in options)}, got {value!r}")
    base = origin or hint
    ok = True
    if hint is Any or hint is inspect.Parameter.empty or not isinstance(base, type):
        return value
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif base is str:
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        value = str(value) if ok else value
    else:
        ok = isinstance(value, base)
    if not ok:
        raise CmhashError(f"{key}: expected {_name(hint)}, got {value!r}")
    return value


def make_dataclass(cls, values: dict, section: str, what: str | None = None):
    """``cls(**values)`` with unknown keys refused and every value checked against its field's type
    (errors name ``section.key``; ``what`` names the settings in the unknown-key error)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise CmhashError(f"unknown {what or section + ' setting'}(s) {unknown}; known: {sorted(names)}")
    return cls(**{k: coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()})


def check_kwargs(fn, values: dict, what: str) -> dict:
    """``values`` checked against the keyword parameters of ``fn`` (a class: its ``__init__``)."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    sig = inspect.signature(target)
    hints = typing.get_type_hints(target)
    params = {n: p for n, p in sig.parameters.items()
              if n != "self" and not n.startswith("_") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    known = sorted(set(params) - {"bits"})
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise CmhashError(f"unknown {what} parameter(s) {unknown}; known: {known}")
    return {k: coerce(v, hints.get(k, Any), f"{what} parameter {k}") for k, v in values.items()}
