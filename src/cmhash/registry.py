"""Registries (timm style): a method, dataset, backbone, text encoder or index backend is one file plus a decorator.

    @register_method("djsrh")
    class DJSRH(HashMethod): ...

Each registry names the package its entries live in; the first lookup imports every module of
that package (``pkgutil``), so a new file in ``cmhash/methods/`` registers itself with no other
line changed. This module imports no entry package itself: it has no import cycle with them.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

from .utils import CmhashError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str, name_attr: str = "name"):
        self.kind, self.package, self.name_attr = kind, package, name_attr
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}
        self._discovered = False

    def register(self, name: str, help: str = "", **declared) -> Callable[[T], T]:
        """Register under ``name``; ``help`` defaults to the docstring's first line. A class whose
        name attribute (``name``; index backends: ``backend``) is not set in its own body gets
        ``name``, and ``declared`` attributes (what it supports,
        e.g. ``distributed=True``) are set on it; each must be one the class already defines."""
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise CmhashError(f"{self.kind} {name!r} is registered twice")
            for key, value in declared.items():
                if not hasattr(obj, key):
                    raise CmhashError(f"{self.kind} {name!r}: unknown declaration {key!r}")
                setattr(obj, key, value)
            attr = self.name_attr
            if isinstance(obj, type) and hasattr(obj, attr) and not vars(obj).get(attr):
                setattr(obj, attr, name)  # a subclass of a registered class gets its own name
            self._items[name] = obj
            self._help[name] = help or (getattr(obj, "__doc__", "") or "").strip().split("\n")[0]
            return obj

        return deco

    def discover(self) -> None:
        """Import every module of the registry's package (once), so their decorators run."""
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__, f"{self.package}."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(info.name)

    def get(self, name: str) -> T:
        self.discover()
        if name not in self._items:
            raise CmhashError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or 'none'}")
        return self._items[name]

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        return {n: self._help[n] for n in self.names()}

    def __contains__(self, name: str) -> bool:
        self.discover()
        return name in self._items


METHODS: Registry = Registry("method", "cmhash.methods")
DATASETS: Registry = Registry("dataset", "cmhash.data")
BACKBONES: Registry = Registry("backbone", "cmhash.models")
INDEX_BACKENDS: Registry = Registry("index backend", "cmhash.index", name_attr="backend")
TEXT_ENCODERS: Registry = Registry("text encoder", "cmhash.text")

register_method = METHODS.register
register_dataset = DATASETS.register
register_backbone = BACKBONES.register
register_index_backend = INDEX_BACKENDS.register
register_text_encoder = TEXT_ENCODERS.register

#: every registry by the name ``cmhash list`` shows it under
ALL = {"methods": METHODS, "datasets": DATASETS, "backbones": BACKBONES, "text encoders": TEXT_ENCODERS, "index backends": INDEX_BACKENDS}
