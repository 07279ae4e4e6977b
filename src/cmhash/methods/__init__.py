"""Hashing methods: each module here registers one with ``@register_method`` and is found by the
registry on first use (no import list to keep up to date)."""
from .base import HashMethod

__all__ = ["HashMethod"]
