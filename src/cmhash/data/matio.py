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
                self._v5 = scipy.io.loadmat(self.path)
            except Exception as e:  # scipy raises many kinds on corrupt input
                raise DataError(f"{self.path}: not a readable MAT file ({type(e).__name__}: {e})") from None
        return self._v5

    def keys(self) -> list[str]:
        if self.is_hdf5:
            try:
                with h5py.File(self.path, "r") as f:
                    return [k for k in f.keys() if not k.startswith("#")]
            except (OSError, RuntimeError, ValueError, KeyError) as e:  # h5py's errors on damaged files
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

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_f"} | {"_f": None}

    def take(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        uniq, inverse = np.unique(idx[order], return_inverse=True)
        try:
            if self._f is None:
                self._f = h5py.File(self.path, "r")
            block = self._f[self.key][uniq]  # h5py wants increasing indices
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as e:
            raise DataError(f"{self.path}: cannot read images {uniq[:3].tolist()}... of {self.key!r} ({e})") from None
        out = np.empty((len(idx),) + block.shape[1:], dtype=block.dtype)
        out[order] = block[inverse]
        if self.layout == "matlab":
            out = out.transpose(0, 1, 3, 2)
        return np.ascontiguousarray(out)
