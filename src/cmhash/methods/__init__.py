"""Hashing methods; each registers itself with ``@register_method``."""
from . import djsrh, dsah, dsprh  # noqa: F401  (registration)
from .base import HashMethod

__all__ = ["HashMethod", "build_method"]


def build_method(name: str, bits: int, img_dim: int, txt_dim: int, params: dict | None = None, backbone=None,
                 map_channels: int = 0):
    from ..registry import METHODS

    cls = METHODS.get(name)
    return cls(cls.make_config(params or {}), bits, img_dim, txt_dim, backbone=backbone, map_channels=map_channels)
