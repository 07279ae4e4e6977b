"""The presets: ``<method>.yaml`` per method (its ``params:``, the paper's values with a comment
each, and per-dataset sections) and ``sweeps/*.yaml``, read here."""
from __future__ import annotations

import dataclasses
from importlib import resources

import yaml


def _preset_file(method: str) -> dict:
    try:
        text = resources.files("cmhash.presets").joinpath(f"{method}.yaml").read_text()
    except FileNotFoundError:
        return {}
    return yaml.safe_load(text) or {}


def method_config(method: str, base: type | None = None) -> type:
    """The ``Config`` dataclass of ``method`` from the ``params:`` section of ``presets/<method>.yaml``
    (the hyper-parameters with the paper's values, each documented there): one field per parameter,
    typed by its default (float, int, bool or str), after the fields of ``base``."""
    preset = _preset_file(method)
    if preset.get("params_from") and base is None:  # a method built on another: its parameters first
        base = method_config(preset["params_from"])
    fields = [(k, type(v), dataclasses.field(default=v)) for k, v in (preset.get("params") or {}).items()]
    return dataclasses.make_dataclass(f"{method.upper()}Config", fields, bases=(base,) if base else ())


def load_preset(method: str, dataset: str) -> dict:
    """The preset sections for ``method`` merged for ``dataset`` (empty if no preset file)."""
    presets = _preset_file(method)
    out: dict = {}
    for key in ("default", dataset):
        deep_update(out, presets.get(key) or {})
    return out


def deep_update(dst: dict, src: dict) -> dict:
    """``src`` merged into ``dst``, nested mappings key by key."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_update(dst[k], v)
        else:
            dst[k] = v
    return dst
