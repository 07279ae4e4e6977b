"""Reading MATLAB .mat files of both kinds: v5 (scipy) and v7.3 (HDF5, h5py).

HDF5 stores MATLAB arrays column-major, so h5py sees every array with its axes reversed: a
MATLAB n x d matrix reads as d x n. ``MatFile.matrix`` undoes that for 2-D arrays; large 4-D image
arrays are returned lazily (``H5Images``) and never read whole.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from .base import DataError


# MAT v5 data types (miINT8 ... miUINT64) and their sizes; miMATRIX = 14, miCOMPRESSED = 15
_MI_SIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_NUMERIC_CLASSES = set(range(6, 16))  # mxDOUBLE ... mxUINT64
_MAX_INFLATE = 1 << 34


class _Bad(Exception):
    pass


def check_v5_structure(raw: bytes, limit: int = _MAX_INFLATE) -> None:
    """Walk a MAT v5 file's element tags before scipy parses it.

    scipy's C reader trusts the tags: a damaged data-type or class byte can crash the process
    (a segmentation fault, found by the fuzz tests), not raise. Every element must fit in its
    parent; every numeric array's data must be a numeric type whose byte count is prod(dims) x
    itemsize; cells and structs are checked recursively; compressed elements must inflate.
    Raises ``_Bad`` with the reason."""
    import struct
    import zlib

    if len(raw) < 128:
        raise _Bad("shorter than the 128-byte MAT header")
    endian = {b"IM": "<", b"MI": ">"}.get(bytes(raw[126:128]))
    if endian is None:
        raise _Bad("no MAT v5 endian indicator in the header")

    def tag(buf, pos, end):
        if pos + 8 > end:
            raise _Bad(f"element tag at byte {pos} runs past its end")
        t, n = struct.unpack(endian + "II", buf[pos:pos + 8])
        if t >> 16:  # small data element: type and size packed in 4 bytes, data in the next 4
            if t >> 16 > 4:
                raise _Bad(f"small element at byte {pos} announces {t >> 16} bytes (at most 4)")
            return t & 0xFFFF, t >> 16, pos + 4, pos + 8
        if pos + 8 + n > end:
            raise _Bad(f"element at byte {pos} announces {n} bytes, only {end - pos - 8} remain")
        return t, n, pos + 8, pos + 8 + n + (-n % 8)

    def matrix(buf, start, end, depth):
        if depth > 16:
            raise _Bad("arrays nested too deeply")
        if start == end:
            return  # an empty element (an empty cell)
        t, n, d, pos = tag(buf, start, end)
        if t != 6 or n != 8:
            raise _Bad("array flags missing")
        cls = struct.unpack(endian + "I", buf[d:d + 4])[0] & 0xFF
        complex_ = bool(struct.unpack(endian + "I", buf[d:d + 4])[0] & 0x800)
        t, n, d, pos = tag(buf, pos, end)
        if t != 5 or n < 8 or n % 4:
            raise _Bad("array dimensions missing")
        dims = struct.unpack(endian + f"{n // 4}i", buf[d:d + n])
        if min(dims) < 0:
            raise _Bad(f"negative array dimension {dims}")
        count = 1
        for x in dims:
            count *= x
        t, n, d, pos = tag(buf, pos, end)
        if t != 1:
            raise _Bad("array name missing")
        if cls in _NUMERIC_CLASSES or cls == 4:  # numbers, or char
            for _ in range(2 if complex_ else 1):
                t, n, d, pos = tag(buf, pos, end)
                if t not in _MI_SIZE or n != count * _MI_SIZE[t] and not (cls == 4 and t in (16, 17)):
                    raise _Bad(f"array data of type {t} and {n} bytes does not fit dimensions {dims}")
        elif cls == 1:  # cell: one matrix element per entry
            for _ in range(count):
                t, n, d, pos = tag(buf, pos, end)
                if t != 14:
                    raise _Bad("cell entry is not an array")
                matrix(buf, d, d + n, depth + 1)
        elif cls == 2:  # struct: field-name length, names, then one array per field and entry
            t, n, d, pos = tag(buf, pos, end)
            if t != 5 or n != 4:
                raise _Bad("struct field-name length missing")
            width = struct.unpack(endian + "i", buf[d:d + 4])[0]
            t, n, d, pos = tag(buf, pos, end)
            if t != 1 or width <= 0 or n % width:
                raise _Bad("struct field names malformed")
            for _ in range(count * (n // width)):
                t, n2, d2, pos = tag(buf, pos, end)
                if t != 14:
                    raise _Bad("struct field is not an array")
                matrix(buf, d2, d2 + n2, depth + 1)
        elif cls not in (3, 5, 16, 17):  # object, sparse, function, opaque: scipy's own checks
            raise _Bad(f"unknown array class {cls}")

    def elements(buf, pos, end, depth=0):
        while pos < end:
            if end - pos < 8 and not any(buf[pos:end]):
                return  # zero padding at the end
            t, n, d, nxt = tag(buf, pos, end)
            if t == 15:
                try:
                    inner = zlib.decompressobj().decompress(bytes(buf[d:d + n]), limit)
                except zlib.error as e:
                    raise _Bad(f"compressed element at byte {pos} does not inflate ({e})") from None
                elements(inner, 0, len(inner), depth + 1)
                nxt = d + n  # compressed elements are not padded
            elif t == 14:
                matrix(buf, d, d + n, 0)
            else:
                raise _Bad(f"top-level element of type {t} at byte {pos} (expected an array)")
            pos = nxt

    try:
        elements(memoryview(raw), 128, len(raw))
    except (struct.error, IndexError, ValueError, OverflowError, RecursionError, MemoryError) as e:
        raise _Bad(f"malformed element ({type(e).__name__})") from None


class MatFile:
    """One .mat file, opened by format; keys are read on demand."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: file not found")
        if self.path.stat().st_size == 0:
            raise DataError(f"{self.path}: file is empty")
        self.is_hdf5 = h5py.is_hdf5(self.path)
        self._v5: dict | None = None

    def _load_v5(self) -> dict:
        if self._v5 is None:
            try:
                check_v5_structure(self.path.read_bytes())
            except _Bad as e:
                raise DataError(f"{self.path}: not a readable MAT file (damaged: {e})") from None
            try:
                self._v5 = scipy.io.loadmat(self.path)
            except Exception as e:  # scipy raises many kinds on corrupt input
                raise DataError(f"{self.path}: not a readable MAT file ({type(e).__name__}: {e})") from None
        return self._v5

    def keys(self) -> list[str]:
        if self.is_hdf5:
            try:
                with h5py.File(self.path, "r") as f:
                    keys = [k.decode("utf-8", "replace") if isinstance(k, bytes) else k for k in f.keys()]
                    return [k for k in keys if not k.startswith("#")]
            except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:  # h5py's errors on damaged files
                raise DataError(f"{self.path}: not a readable HDF5/MAT v7.3 file ({e})") from None
        return [k for k in self._load_v5() if not k.startswith("__")]

    def _require(self, key: str) -> None:
        keys = self.keys()
        if key not in keys:
            raise DataError(f"{self.path}: missing key {key!r} (keys present: {', '.join(keys) or 'none'})")

    def matrix(self, key: str) -> np.ndarray:
        """A 1-D or 2-D array as MATLAB shows it (rows = items)."""
        self._require(key)
        if self.is_hdf5:
            try:
                with h5py.File(self.path, "r") as f:
                    arr = np.asarray(f[key][()])
            except (OSError, KeyError, TypeError, RuntimeError, ValueError) as e:
                raise DataError(f"{self.path}: cannot read {key!r} ({e})") from None
            arr = arr.T  # undo MATLAB's column-major order
        else:
            arr = np.asarray(self._load_v5()[key])
        if arr.dtype == object:
            raise DataError(f"{self.path}: {key!r} is a cell/struct array, expected a numeric matrix")
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{self.path}: {key!r} has dtype {arr.dtype}, expected a real numeric matrix")
        if arr.size == 0:
            raise DataError(f"{self.path}: {key!r} is empty (shape {arr.shape})")
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise DataError(f"{self.path}: {key!r} has shape {arr.shape}, expected a 2-D matrix")
        return arr

    def images(self, key: str, layout: str = "matlab") -> "np.ndarray | H5Images":
        """A 4-D uint8 image array: lazily from HDF5, in memory from v5."""
        self._require(key)
        if self.is_hdf5:
            return H5Images(self.path, key, layout)
        arr = np.asarray(self._load_v5()[key])
        if arr.ndim != 4:
            raise DataError(f"{self.path}: {key!r} has shape {arr.shape}, expected 4-D images")
        # v5 keeps MATLAB's H x W x 3 x N order
        if arr.shape[2] == 3 and arr.shape[0] != 3:
            arr = np.ascontiguousarray(arr.transpose(3, 2, 0, 1))
        return arr


class H5Images:
    """Lazy (N, 3, H, W) uint8 view of an HDF5 image array; only requested rows are read.

    ``layout="matlab"``: the community's ``IAll`` files hold a MATLAB 224x224x3xN array, which h5py
    sees as (N, 3, W, H); each item is transposed to (3, H, W) (DJSRH does the same with
    ``np.transpose(img, (2, 1, 0))`` to HWC). ``layout="nchw"``: stored as (N, 3, H, W) already.
    The file is opened on first access in each process, so the object is safe to send to workers.
    """

    def __init__(self, path: str | os.PathLike, key: str, layout: str = "matlab"):
        if layout not in ("matlab", "nchw"):
            raise DataError(f"unknown image layout {layout!r}; use 'matlab' or 'nchw'")
        self.path, self.key, self.layout = Path(path), key, layout
        self._f = None
        try:
            with h5py.File(self.path, "r") as f:
                ds = f[key]
                shape, self.dtype = ds.shape, ds.dtype
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as e:
            raise DataError(f"{self.path}: cannot open image array {key!r} ({e})") from None
        if len(shape) != 4 or shape[1] != 3:
            raise DataError(f"{self.path}: {key!r} has shape {shape}, expected (N, 3, H, W) images")
        if self.dtype != np.uint8:
            raise DataError(f"{self.path}: {key!r} has dtype {self.dtype}, expected uint8 pixels")
        n, c, a, b = shape
        self.shape = (n, c, b, a) if layout == "matlab" else (n, c, a, b)

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        """Close this process's handle (before worker processes fork: each opens its own)."""
        if self._f is not None:
            try:
                self._f.close()
            except Exception:  # noqa: BLE001 - already closed or invalid
                pass
            self._f = None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_f"} | {"_f": None}

    def take(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        uniq, inverse = np.unique(idx[order], return_inverse=True)
        try:
            if self._f is None or getattr(self, "_pid", None) != os.getpid():  # a worker process: own handle
                self._f, self._pid = h5py.File(self.path, "r"), os.getpid()
            block = self._f[self.key][uniq]  # h5py wants increasing indices
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as e:
            raise DataError(f"{self.path}: cannot read images {uniq[:3].tolist()}... of {self.key!r} ({e})") from None
        out = np.empty((len(idx),) + block.shape[1:], dtype=block.dtype)
        out[order] = block[inverse]
        if self.layout == "matlab":
            out = out.transpose(0, 1, 3, 2)
        return np.ascontiguousarray(out)
