"""Binary codes and Hamming distances.

Sign convention: ``cmhash.codes.sign`` (v >= 0 -> +1). Packed codes follow
faiss's layout: n x K/8 uint8, bit j of the code in byte j // 8 at bit position j % 8 (least
significant first), bit value 1 for +1.
"""
from __future__ import annotations

import numpy as np

from ..codes import sign
from ..kernels import dist_dtype, hamming_packed  # noqa: F401  (hamming_packed: part of this module's face)
from ..utils import CmhashError


def binarize(codes) -> np.ndarray:
    """Real-valued (or {-1,+1}, or {0,1}-as-bool) codes -> int8 {-1,+1}."""
    a = np.asarray(codes)
    if a.ndim != 2:
        raise CmhashError(f"codes must be 2-D (n, K), got shape {a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise CmhashError("codes contain NaN or inf")
    if a.dtype == bool:
        return np.where(a, 1, -1).astype(np.int8)
    return sign(a)


def pack_codes(codes) -> np.ndarray:
    """{-1,+1} (or real) n x K codes -> n x K/8 uint8 (faiss layout). K must be a multiple of 8."""
    b = binarize(codes)
    if b.shape[1] % 8:
        raise CmhashError(f"code length {b.shape[1]} is not a multiple of 8; cannot pack")
    return np.packbits(b > 0, axis=1, bitorder="little")


def unpack_codes(packed, n_bits: int | None = None) -> np.ndarray:
    """n x K/8 uint8 -> n x K int8 {-1,+1}."""
    p = np.asarray(packed)
    if p.dtype != np.uint8 or p.ndim != 2:
        raise CmhashError(f"packed codes must be a 2-D uint8 array, got {p.dtype} {p.shape}")
    bits = np.unpackbits(p, axis=1, bitorder="little", count=n_bits)
    return np.where(bits > 0, 1, -1).astype(np.int8)


def hamming_pm1(q, db) -> np.ndarray:
    """Hamming distances between {-1,+1} codes: (K - q . b) / 2, as small unsigned ints (nq, ndb)."""
    q, db = np.asarray(q, np.float32), np.asarray(db, np.float32)
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise CmhashError(f"code shapes do not match: {q.shape} vs {db.shape}")
    k = q.shape[1]
    ip = q @ db.T  # exact in float32 for K < 2**24
    return np.rint((k - ip) * 0.5).astype(dist_dtype(k))
