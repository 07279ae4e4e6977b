"""Registries (timm style): a new method, dataset or backbone is one file plus a decorator.

    @register_method("djsrh")
    class DJSRH(HashMethod): ...
"""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .utils import CmhashError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise CmhashError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            doc = help or (getattr(obj, "__doc__", "") or "").strip().split("\n")[0]
            self._help[name] = doc
            return obj

        return deco

    def get(self, name: str) -> T:
        _load_builtins()
        if name not in self._items:
            known = ", ".join(sorted(self._items)) or "none"
            raise CmhashError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        _load_builtins()
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        _load_builtins()
        return {n: self._help[n] for n in sorted(self._items)}


METHODS: Registry = Registry("method")
DATASETS: Registry = Registry("dataset")
BACKBONES: Registry = Registry("backbone")

register_method = METHODS.register
register_dataset = DATASETS.register
register_backbone = BACKBONES.register

_loaded = False


def _load_builtins() -> None:
    """Import the modules whose decorators fill the registries (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import methods  # noqa: F401
    from .data import formats  # noqa: F401
    from .models import backbones  # noqa: F401
