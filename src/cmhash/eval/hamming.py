"""Hamming distances between codes (packing and the sign convention: ``cmhash.codes``)."""
from __future__ import annotations

import numpy as np

from ..codes import binarize, pack_codes, unpack_codes  # noqa: F401  (this module's face for metrics callers)
from ..kernels import dist_dtype, hamming_packed  # noqa: F401  (hamming_packed: part of this module's face)
from ..utils import CmhashError


def hamming_pm1(q, db) -> np.ndarray:
    """Hamming distances between {-1,+1} codes: (K - q . b) / 2, as small unsigned ints (nq, ndb)."""
    q, db = np.asarray(q, np.float32), np.asarray(db, np.float32)
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise CmhashError(f"code shapes do not match: {q.shape} vs {db.shape}")
    k = q.shape[1]
    ip = q @ db.T  # exact in float32 for K < 2**24
    return np.rint((k - ip) * 0.5).astype(dist_dtype(k))
