"""Multi-index hashing: exact k-NN that is sublinear on codes that cluster.

Norouzi, Punjani & Fleet, "Fast Exact Search in Hamming Space with Multi-Index Hashing", TPAMI
2014 (CVPR 2012). A K-bit code is cut into m disjoint substrings; each substring position has a
direct-address table (substring value -> rows, kept as CSR arrays ``ptr``/``ids``, rows ascending).
By the pigeonhole principle (their Prop. 1), a code within distance r = s*m + a of the query has
a substring j <= a within s, or any substring within s - 1; so search radius r adds exactly one
probe: substring a at substring distance exactly s. Every new candidate is verified with its full
distance; the search stops at the first r with k candidates within r, when all codes within r have
been seen, so the result is exact; it is then ordered by (distance, insertion row), as the flat
index orders it.

Substring length: the paper's rule m = K / log2(n), each table then holding about one row per
entry; we cap substrings at 24 bits (16M-entry tables) and never use fewer than 1 or more than
K/4 tables. ``m`` may be set. Tables are rebuilt lazily after ``add``/``remove`` (O(n log n)).

A query far from every code (its k-th neighbour at a large radius, e.g. a cross-modal query across
a wide modality gap, or random codes) would probe and verify more than a scan costs; each query
has a budget of half a flat scan's work, after which it is scanned exhaustively (``visits`` -1),
so MIH costs at most about 1.5 flat scans per query and its results stay exact.
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..registry import register_index_backend
from .flat import _CodeStore


def default_m(bits: int, n: int, max_sub: int = 24) -> int:
    """The paper's m = K / log2(n), rounded, with substrings of at most ``max_sub`` bits."""
    m = round(bits / max(1.0, math.log2(max(n, 2))))
    return int(min(max(m, math.ceil(bits / max_sub), 1), max(1, bits // 4), 64))


@register_index_backend("mih", help="exact multi-index hashing: sublinear for near neighbours")
class MultiIndexHashing(_CodeStore):
    """Exact k-NN by multi-index hashing (compiled kernel; numpy flat scan when it is not built)."""

    def __init__(self, bits: int, m: int | None = None, threads: int | None = None, budget: float = 0.5):
        super().__init__(bits)
        if m is not None and not (1 <= int(m) <= min(64, self.bits)):
            raise ValueError(f"m must be between 1 and {min(64, self.bits)}, got {m}")
        if m is not None and math.ceil(self.bits / int(m)) > 24:
            raise ValueError(f"m={m} gives substrings over 24 bits (tables of 16M entries or more); "
                             f"use m >= {math.ceil(self.bits / 24)}")
        self.m = int(m) if m is not None else None
        self.threads = threads
        self.budget = float(budget)  # per query, as a fraction of one flat scan
        self._tables = None

    def _params(self) -> dict:
        return ({"m": self.m} if self.m is not None else {}) | ({"budget": self.budget} if self.budget != 0.5 else {})

    def _added(self, packed):
        self._tables = None

    def _removed(self):
        self._tables = None

    @property
    def substrings(self) -> list[tuple[int, int]]:
        """(bit offset, length) of each substring for the current size."""
        m = self.m or default_m(self.bits, self.ntotal)
        base, extra = divmod(self.bits, m)
        lens = [base + (1 if j < extra else 0) for j in range(m)]
        offs = np.cumsum([0] + lens[:-1]).tolist()
        return list(zip(offs, lens))

    def _build(self):
        subs = self.substrings
        db = self.codes
        n = len(db)
        ptrs, bases, ids = [], [], np.empty((len(subs), n), np.uint32)
        base = 0
        for j, (off, length) in enumerate(subs):
            keys = kernels.substr_keys(db, off, length)  # (n,) uint32
            order = np.argsort(keys, kind="stable").astype(np.uint32)
            ids[j] = order
            counts = np.bincount(keys, minlength=1 << length)
            ptr = np.zeros((1 << length) + 1, np.uint32)
            np.cumsum(counts, out=ptr[1:])
            ptrs.append(ptr)
            bases.append(base)
            base += len(ptr)
        self._tables = dict(offs=np.array([o for o, _ in subs], np.int32), lens=np.array([l for _, l in subs], np.int32),
                            ptrs=np.concatenate(ptrs), base=np.array(bases, np.int64), ids=ids)

    def search(self, queries, k: int, with_visits: bool = False):
        """Exact top-k; with ``with_visits`` also the number of codes each query verified (-1: it
        ran out of budget and was scanned exhaustively)."""
        q = self._queries(queries)
        k = self._check_k(k)
        if kernels.kernel_name() != "c" or self.ntotal == 0 or self.ntotal >= 2 ** 32 - 1:
            d, rows = kernels.knn(self.codes, q, k, self.threads)
            visits = np.full(len(q), self.ntotal, np.int64)
        else:
            if self._tables is None:
                self._build()
            t = self._tables
            d, rows, visits = kernels.mih_knn(self.codes, q, k, t["offs"], t["lens"], t["ptrs"], t["base"], t["ids"],
                                              self.threads, with_visits=True,
                                              budget=int(self.budget * self.ntotal))
        return (d, self._map(rows), visits) if with_visits else (d, self._map(rows))
