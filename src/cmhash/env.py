"""Every ``CMHASH_*`` environment variable cmhash reads, parsed here and nowhere else.

Each reader checks its value and raises a ``CmhashError`` naming the variable and what it
accepts; an empty value means unset, for every variable. ``check()`` reads them all: the
command line calls it before any command runs, so ``train`` refuses a bad ``CMHASH_KERNEL`` as
``search`` does, before any work. (The test suite's own switches, ``CMHASH_REQUIRE_*`` and
``CMHASH_FUZZ_EXAMPLES``, are read by the tests, not by the package.)
"""
from __future__ import annotations

import os
from pathlib import Path

from .utils import CmhashError

KERNELS = ("scalar", "avx2", "avx512")  # the flat scan's paths, lowest first (kernels.LEVELS)

VARIABLES = {
    "CMHASH_CACHE_DIR": "the frozen-feature cache folder (default: the user cache folder, ~/.cache/cmhash on Linux)",
    "CMHASH_THREADS": "threads of the Hamming kernels in search and evaluation: a whole number >= 1 "
                      "(default: every core)",
    "CMHASH_KERNEL": f"the flat scan's path: {', '.join(KERNELS)} or auto (default: the best this CPU has)",
}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value is not None and value.strip() else None


def threads() -> int:
    """``CMHASH_THREADS``, else every core."""
    raw = _raw("CMHASH_THREADS")
    if raw is None:
        return os.cpu_count() or 1
    if not raw.isdigit() or int(raw) < 1:
        raise CmhashError(f"CMHASH_THREADS={raw[:40]!r}: expected a whole number of threads >= 1 (or unset: every core)")
    return int(raw)


def kernel() -> str | None:
    """``CMHASH_KERNEL``'s path name, lower case; None when unset, empty or ``auto``."""
    raw = _raw("CMHASH_KERNEL")
    if raw is None or raw.lower() == "auto":
        return None
    if raw.lower() not in KERNELS:
        raise CmhashError(f"CMHASH_KERNEL={raw[:40]!r}: expected one of {', '.join(KERNELS)} (or unset)")
    return raw.lower()


def cache_dir() -> Path:
    """Where frozen features and pretrained text features are cached: ``CMHASH_CACHE_DIR`` when
    set, else the platform's user cache folder (``~/.cache/cmhash`` on Linux, ``~/Library/Caches/
    cmhash`` on macOS), the same from any working directory. Not created here: its writers make it
    (``utils.usable_dir``), with one clear line when it cannot be."""
    raw = _raw("CMHASH_CACHE_DIR")
    if raw is not None:
        return Path(raw).expanduser().resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("cmhash", appauthor=False))


def check() -> None:
    """Read every variable once, so that a bad value stops any command before it starts."""
    threads()
    kernel()
    cache_dir()
