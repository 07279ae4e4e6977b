"""Exact exhaustive search: cmhash's own kernel (``flat``) and faiss's ``IndexBinaryFlat`` (``faiss``)."""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..registry import register_index_backend
from ..utils import require
from .base import HammingIndex, HashIndexError, as_packed, widen_to_exact


class _CodeStore(HammingIndex):
    """Codes in one growable (capacity-doubling) buffer, rows in insertion order."""

    def __init__(self, bits: int):
        super().__init__(bits)
        self._buf = np.zeros((0, self.nbytes), np.uint8)

    @property
    def codes(self) -> np.ndarray:
        """(ntotal, bits/8) uint8 view of the stored codes, in insertion order."""
        return self._buf[: self.ntotal]

    def _append(self, packed: np.ndarray) -> None:
        n0, n = self.ntotal, len(packed)
        if n0 + n > len(self._buf):
            cap = max(n0 + n, 2 * len(self._buf), 1024)
            buf = np.zeros((cap, self.nbytes), np.uint8)
            buf[:n0] = self._buf[:n0]
            self._buf = buf
        self._buf[n0:n0 + n] = packed

    def add(self, codes, ids=None) -> np.ndarray:
        packed = as_packed(codes, self.bits)
        ids = self._new_ids(len(packed), ids)
        self._append(packed)
        self._ids = np.concatenate([self._ids, ids])
        self._added(packed)
        return ids

    def _added(self, packed: np.ndarray) -> None:
        pass

    def _keep_rows(self, keep: np.ndarray) -> None:
        self._buf = np.ascontiguousarray(self.codes[keep])
        self._ids = self._ids[keep]

    def remove(self, ids) -> int:
        """Drop the codes of ``ids`` (unknown ids are ignored); the others keep their order."""
        ids = np.asarray(ids, np.int64).ravel()
        drop = np.isin(self._ids, ids)
        if drop.any():
            self._keep_rows(~drop)
            self._removed()
        return int(drop.sum())

    def _removed(self) -> None:
        pass

    def reconstruct(self, ids) -> np.ndarray:
        ids = np.asarray(ids, np.int64).ravel()
        order = np.argsort(self._ids, kind="stable")
        pos = np.searchsorted(self._ids, ids, sorter=order)
        pos = np.minimum(pos, max(0, self.ntotal - 1))
        rows = order[pos] if self.ntotal else pos
        if not self.ntotal or (self._ids[rows] != ids).any():
            missing = ids[(self._ids[rows] != ids)] if self.ntotal else ids
            raise HashIndexError(f"ids not in the index: {missing[:5].tolist()}")
        return self.codes[rows].copy()

    def range_search(self, queries, radius: int, chunk: int = 1 << 17):
        """All codes within ``radius`` (inclusive) of each query: (lims (nq+1,), D int32, I int64)."""
        q = self._queries(queries)
        radius = self._check_radius(radius)
        ds, rs = [[] for _ in q], [[] for _ in q]
        db = self.codes
        for s in range(0, self.ntotal, chunk):
            d = kernels.dists(db[s:s + chunk], q)  # (nq, c)
            qi, ri = np.nonzero(d <= radius)
            for i in np.unique(qi):
                sel = qi == i
                ds[i].append(d[i, ri[sel]])
                rs[i].append(ri[sel] + s)
        lims, D, rows = [0], [], []
        for i in range(len(q)):
            d = np.concatenate(ds[i]) if ds[i] else np.zeros(0, np.uint16)
            r = np.concatenate(rs[i]) if rs[i] else np.zeros(0, np.int64)
            o = np.argsort(d, kind="stable")  # rows were found in ascending order
            D.append(d[o].astype(np.int32))
            rows.append(r[o].astype(np.int64))
            lims.append(lims[-1] + len(o))
        D = np.concatenate(D) if D else np.zeros(0, np.int32)
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        return np.asarray(lims, np.int64), D, self._map(rows)

    def _payload(self) -> list[bytes]:
        return [self.codes.tobytes(), self._ids.astype("<i8").tobytes()]

    @classmethod
    def _from_payload(cls, header, payload, **options):
        """Codes and ids are views of the payload (a file mapping stays a mapping: nothing is read
        until a search touches it); the first change copies them (``_append``, ``_keep_rows``)."""
        idx = cls(header["bits"], **{**header.get("params", {}), **options})
        n, nb = header["ntotal"], header["bits"] // 8
        if len(payload) != n * nb + 8 * n:
            raise HashIndexError(f"index payload has {len(payload)} bytes, {n * nb + 8 * n} expected")
        if n:
            idx._buf = payload[: n * nb].reshape(n, nb)
            ids = payload[n * nb:].view("<i8")
            idx._ids = ids if ids.dtype == np.int64 else ids.astype(np.int64)  # big-endian hosts: a copy
            idx._added(idx._buf)
        return idx


@register_index_backend("flat", help="exact exhaustive scan, cmhash's compiled kernel (default)")
class FlatIndex(_CodeStore):
    """Exhaustive exact search with cmhash's compiled kernel (numpy when it is not built).

    One pass over the database per block of queries: 16 with AVX-512 VPOPCNTDQ (8 codes per
    instruction), 32 with AVX2 (byte-sliced blocks of 32 codes, nibble tables per query), 8 with
    scalar popcnt, the path chosen at run time (``CMHASH_KERNEL`` forces one); each query keeps a
    distance bound and the first k rows per distance, so a row that cannot rank costs one compare
    (``cmhash/kernels/scan.c``). Against faiss's ``IndexBinaryFlat``, per path:
    ``benchmarks/bench_index.py --sections exact`` (docs/benchmarks.md).
    """

    def __init__(self, bits: int, threads: int | None = None):
        super().__init__(bits)
        self.threads = threads

    def search(self, queries, k: int):
        q = self._queries(queries)
        k = self._check_k(k)
        d, rows = kernels.knn(self.codes, q, k, self.threads)
        return d, self._map(rows)


@register_index_backend("faiss", help="exact, faiss IndexBinaryFlat")
class FaissFlatIndex(_CodeStore):
    """faiss's ``IndexBinaryFlat`` behind the same interface.

    faiss orders equal distances by its heap, not by insertion; to return the evaluation's order
    exactly, a query whose k-th distance also fills the last slot of the fetched list is searched
    again with twice the list length until the list ends beyond the k-th distance, and the list is
    then sorted by (distance, row).
    """

    def __init__(self, bits: int, threads: int | None = None):
        super().__init__(bits)
        faiss = self._faiss = require("faiss", "faiss", "the faiss backend")
        self._index = faiss.IndexBinaryFlat(self.bits)
        self.threads = threads

    def _added(self, packed):
        self._index.add(packed)

    def _removed(self):
        self._index = self._faiss.IndexBinaryFlat(self.bits)
        if self.ntotal:
            self._index.add(self.codes)

    def search(self, queries, k: int):
        q = self._queries(queries)
        k = self._check_k(k)
        if self.threads:
            self._faiss.omp_set_num_threads(self.threads)

        def fetch(idx, limit):
            D, I = self._index.search(q[idx], limit)
            return [(D[j, o], I[j, o]) for j in range(len(idx)) for o in [np.lexsort((I[j], D[j]))]]

        od, rows = widen_to_exact(len(q), k, self.ntotal, fetch)
        return od, self._map(rows)
