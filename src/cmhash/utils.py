"""Small shared helpers: atomic writes, seeding, device choice, JSON. torch is imported by the
functions that use it, so the index and search layers load without it (a store-only process)."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class CmhashError(Exception):
    """Base class of every error cmhash raises on purpose (bad input, bad config, bad file)."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    A crash or exception while writing leaves the previous file untouched and no partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class WriteLock:
    """An exclusive lock on ``path`` (``fcntl.flock``) held by one writer at a time, across processes.

    The kernel drops it when its holder dies, so a killed writer never leaves a stale lock. The
    holder's pid is written into the file, so a waiting writer can name it. ``acquire(timeout)``
    waits up to ``timeout`` seconds (0: not at all) and then raises ``CmhashError``."""

    def __init__(self, path: str | os.PathLike, what: str = "this folder"):
        self.path, self.what, self._fd = Path(path), what, None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float = 600.0, on_wait=None) -> "WriteLock":
        import fcntl
        import time

        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._holder(fd)
                    os.close(fd)
                    raise CmhashError(f"{self.what} is being written by another process{holder}; waited "
                                      f"{timeout:g} s: try again when it has finished") from None
                if on_wait is not None and not told:
                    on_wait(f"waiting for another writer of {self.what}{self._holder(fd)} ...")
                    told = True
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd) -> str:
        try:
            pid = os.pread(fd, 32, 0).decode().strip()
        except (OSError, UnicodeDecodeError):
            return ""
        return f" (pid {pid})" if pid.isdigit() else ""

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "WriteLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def require(module: str, extra: str, what: str):
    """Import ``module`` for ``what``, or a ``CmhashError`` naming the install that brings it: the
    base install trains, evaluates, encodes and searches (flat, mih, ivf); faiss, Milvus, the HTTP
    service and MiniLM come with the extras ``[faiss]``, ``[milvus]``, ``[serve]`` and ``[text]``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise CmhashError(f"{what} needs the [{extra}] extra ({module} is not installed): "
                          f"pip install 'cmhash[{extra}]' (in a clone: pip install -e '.[{extra}]')") from None


def default_cache_dir() -> Path:
    """Where frozen features and pretrained text features are cached: ``CMHASH_CACHE_DIR`` when
    set, else the platform's user cache folder (``~/.cache/cmhash`` on Linux, ``~/Library/Caches/
    cmhash`` on macOS), the same from any working directory."""
    env = os.environ.get("CMHASH_CACHE_DIR")
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("cmhash", appauthor=False))


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike, what: str = "file"):
    """The JSON in ``path``; a file that is not JSON (or not UTF-8) is a ``CmhashError`` calling the
    ``what`` damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise CmhashError(f"{path}: damaged {what} (not JSON)") from None


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_torch_file(path: str | os.PathLike, what: str):
    """``torch.load(weights_only=True)`` on the CPU; a missing, truncated or foreign file is a
    ``CmhashError`` that names the file and ``what`` it should have been."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CmhashError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged or foreign file
        raise CmhashError(f"{path}: not a readable {what}, damaged or truncated ({type(e).__name__}: "
                          f"{str(e).split('. ')[0][:160]})") from None


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str = "auto") -> "torch.device":  # noqa: F821 - torch is imported when used
    """'auto' picks CUDA when present, else CPU; anything else is passed to torch.device."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise CmhashError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise CmhashError(f"device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise CmhashError(f"device {name!r} asked for, but MPS is not available on this machine")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CmhashError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return dev


@functools.lru_cache(maxsize=1)
def auto_threads(window: float = 0.25) -> int:
    """Threads for CPU training: the cores this process may use minus those other processes keep
    busy, measured over ``window`` seconds from /proc/stat (at least 1). Measured (DJSRH and five
    other methods on UCM-captions, 2 cores): on an idle machine 2 threads run an epoch 1.7-2.5x
    faster than 1; with other processes on the cores, 1 thread ran 5x faster than 2 (torch's
    threads then wait for each other). Off Linux: every core. Decided once per process, so the
    runs of one process (a sweep, a kill-and-resume test) use one thread count; set
    ``train.num_threads`` for bit-identical results across processes."""
    import time

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
        return sum(v) - v[3] - v[4], sum(v), int(own[11]) + int(own[12])  # busy, total, this process

    try:
        b0, t0, o0 = sample()
        time.sleep(window)
        b1, t1, o1 = sample()
    except (OSError, ValueError, IndexError):
        return cores
    total = max(1, t1 - t0)
    n_cpu = os.cpu_count() or cores
    busy_elsewhere = max(0.0, (b1 - b0) - (o1 - o0)) / total * n_cpu  # cores kept busy by others
    return max(1, min(cores, cores - round(busy_elsewhere)))
