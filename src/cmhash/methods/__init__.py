"""Hashing methods; each registers itself with ``@register_method``."""
from . import dcmh, djsrh, dsah, dsprh, sdeh, ssah, udsph  # noqa: F401  (registration)
from .base import HashMethod

__all__ = ["HashMethod", "build_method"]


def build_method(name: str, bits: int, img_dim: int, txt_dim: int, params: dict | None = None, backbone=None,
                 map_channels: int = 0, n_labels: int = 0):
    from ..registry import METHODS

    cls = METHODS.get(name)
    return cls(cls.make_config(params or {}), bits, img_dim, txt_dim, backbone=backbone, map_channels=map_channels,
               n_labels=n_labels)
