"""Inverted-file search over binary codes: approximate, sublinear cross-modal k-NN with exact distances.

Multi-index hashing (``mih.py``) is exact and sublinear only while the k-th neighbour is close: a
text query's 50th image neighbour sits about 16 bits away on learned 64-bit codes, where its
pigeonhole probing visits most of the table. An inverted file (Sivic & Zisserman, ICCV 2003; Jegou,
Douze & Schmid, TPAMI 2011, for its use in k-NN search) does not depend on the radius: a coarse
quantizer cuts Hamming space into ``nlist`` cells, each code is stored in the list of its nearest
centroid, and a query reads only the lists of its ``nprobe`` nearest centroids.

- Coarse quantizer: binary k-means (k-majority: assignment by Hamming distance, each centroid bit
  the majority of its members' bits) on a sample of ``64 * nlist`` codes, seeded, so a rebuild gives
  the same lists.
- Search: every code of the probed lists is compared with its full distance (the compiled kernel
  reads each list once per chunk of queries, each probing query streaming it from L1, 8 codes per
  AVX-512 instruction); the result is the top-k of the probed codes, ordered by (distance, row)
  like every other backend, so the returned distances are true Hamming distances and
  ``nprobe = nlist`` gives the exact answer's distances (a tie at the k-th distance keeps the codes
  probed first). What is approximate is only which codes were looked at: recall@k.
- Recall@k is measured against the exact answer (``recall_at_k``): the share of returned codes
  within the exact k-th distance, as ann-benchmarks counts it (codes tied at the k-th distance are
  equally right), or, ``strict``, the distances matched as multisets.
- ``search(q, k, exact=True)`` answers exactly by multi-index hashing (this class is one), so a
  store can pick per query direction (``store.IndexStore.search``).

The lists are built lazily at the first approximate search after ``add``/``remove`` (codes added
later go to their nearest existing centroid; the quantizer is trained again once the index has grown
4x since it was trained) and are saved with the index (centroids and each code's list), so opening
a store does not train again.
"""
from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..registry import register_index_backend
from .base import HashIndexError
from .mih import MultiIndexHashing


def default_nlist(n: int) -> int:
    """About 2 sqrt(n) cells, a power of two, 16 to 65,536 (1M codes: 2,048 cells of ~500 codes;
    measured on learned 64-bit codes, 2,048 and 4,096 cells beat 1,024 at equal recall)."""
    return int(min(65536, max(16, 2 ** round(math.log2(max(1.0, 2 * math.sqrt(max(n, 1))))))))


def train_quantizer(codes: np.ndarray, nlist: int, iters: int = 12, seed: int = 0) -> np.ndarray:
    """(nlist, nbytes) binary centroids by k-majority on a sample of 64 * nlist codes."""
    rng = np.random.default_rng(seed)
    n = len(codes)
    sample = codes[np.sort(rng.choice(n, min(n, 64 * nlist), replace=False))] if n > 64 * nlist else codes
    nlist = min(nlist, len(sample))
    cent = sample[np.sort(rng.choice(len(sample), nlist, replace=False))].copy()
    bits = np.unpackbits(sample, axis=1, bitorder="little").astype(np.float64)  # (m, K)
    for _ in range(iters):
        _, a = kernels.knn(cent, sample, 1)
        a = a[:, 0]
        counts = np.bincount(a, minlength=nlist)
        ones = np.stack([np.bincount(a, weights=bits[:, b], minlength=nlist) for b in range(bits.shape[1])], 1)
        new = np.packbits(ones * 2 > counts[:, None], axis=1, bitorder="little")  # (nlist, nbytes)
        empty = counts == 0  # a cell that lost every member takes a random sample code
        if empty.any():
            new[empty] = sample[rng.choice(len(sample), int(empty.sum()), replace=False)]
        if np.array_equal(new, cent):
            break
        cent = new
    return np.ascontiguousarray(cent)


def recall_at_k(exact_d: np.ndarray, approx_d: np.ndarray, strict: bool = False) -> np.ndarray:
    """Per query recall@k of an approximate top-k against the exact one, from distances alone
    (``exact_d``/``approx_d`` (nq, k) int, -1 for empty slots).

    Default, as ann-benchmarks counts it (Aumueller, Bernhardsson & Faithfull, Information Systems
    2020): the share of the k returned codes lying within the exact k-th distance. Under Hamming
    distance many codes tie at the k-th distance, and any of them is as right as the one the exact
    order lists. ``strict``: the share of the exact top-k's distances that the approximate top-k
    also holds, as multisets (a returned code at the k-th distance no longer stands in for a
    missed nearer one)."""
    exact_d, approx_d = np.asarray(exact_d), np.asarray(approx_d)
    k = exact_d.shape[1]
    n_exact = (exact_d >= 0).sum(1)
    if not strict:
        kth = np.where(n_exact > 0, exact_d[np.arange(len(exact_d)), np.maximum(n_exact - 1, 0)], -1)
        hit = ((approx_d >= 0) & (approx_d <= kth[:, None])).sum(1)
        return np.minimum(hit, n_exact) / np.maximum(1, np.minimum(k, n_exact))
    K = int(max(exact_d.max(initial=0), approx_d.max(initial=0))) + 1
    out = np.empty(len(exact_d))
    for j, (e, a) in enumerate(zip(exact_d, approx_d)):
        e, a = e[e >= 0], a[a >= 0]
        out[j] = np.minimum(np.bincount(e, minlength=K), np.bincount(a, minlength=K)).sum() / max(1, len(e))
    return out


def calibrate(index: "IVFIndex", queries: np.ndarray, k: int = 50, target: float = 0.95,
              nprobes=(4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)) -> dict:
    """The smallest ``nprobe`` whose recall@k (``recall_at_k``) on ``queries`` reaches ``target``,
    measured against the exact answer; every list probed when none does. Returns
    ``{"nprobe", "recall", "recall_strict", "queries", "k"}``. With ``target=0`` and one nprobe it
    measures the recall at that nprobe."""
    q = index._queries(queries)
    k = min(k, max(1, index.ntotal))
    exact_d, _ = index.search(q, k, exact=True)
    index.prepare()
    out = None
    for npr in [p for p in nprobes if p < index.n_lists] + [index.n_lists]:
        d, _ = index.search(q, k, nprobe=npr)
        out = {"nprobe": int(npr), "recall": round(float(recall_at_k(exact_d, d).mean()), 4),
               "recall_strict": round(float(recall_at_k(exact_d, d, strict=True).mean()), 4),
               "queries": len(q), "k": int(k)}
        if out["recall"] >= target:
            break
    return out


@register_index_backend("ivf", help="approximate inverted file (exact distances, recall measured) + exact MIH")
class IVFIndex(MultiIndexHashing):
    """Approximate k-NN by an inverted file over binary codes; exact k-NN by multi-index hashing.

    ``approximate = True`` tells a store it may answer some query directions with it
    (``store.planning``: cross-modal ones, and same-modal ones too with ``approx_same_modal``,
    once the index holds ``approx_from`` codes, with the ``nprobe`` ``calibrate`` finds for
    ``target_recall``)."""

    approximate = True

    def calibrate(self, queries: np.ndarray, k: int = 50, target: float = 0.95, **kw) -> dict:
        """``calibrate(self, ...)``: the smallest nprobe reaching ``target`` recall@k on ``queries``."""
        return calibrate(self, queries, k, target, **kw)

    def __init__(self, bits: int, nlist: int | None = None, nprobe: int = 32, m: int | None = None,
                 threads: int | None = None, budget: float = 0.5, seed: int = 0, approx_from: int = 100_000,
                 target_recall: float = 0.95, approx_same_modal: bool = False):
        super().__init__(bits, m=m, threads=threads, budget=budget)
        if nlist is not None and not 1 <= int(nlist) <= 1 << 20:
            raise ValueError(f"nlist must be between 1 and {1 << 20}, got {nlist}")
        if not 1 <= int(nprobe):
            raise ValueError(f"nprobe must be >= 1, got {nprobe}")
        if not 0 < float(target_recall) <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        if int(approx_from) < 0:
            raise ValueError(f"approx_from must be >= 0, got {approx_from}")
        self.nlist = int(nlist) if nlist is not None else None
        self.nprobe = int(nprobe)
        self.seed = int(seed)
        self.approx_from = int(approx_from)
        self.target_recall = float(target_recall)
        self.approx_same_modal = bool(approx_same_modal)
        self._cent = None     # (nlist, nbytes) centroids
        self._assign = None   # (ntotal,) list of each row
        self._trained_n = 0
        self._lists = None    # (codes grouped by list, rows, list_ptr)

    def _params(self) -> dict:
        return super()._params() | {"nprobe": self.nprobe, "seed": self.seed, "approx_from": self.approx_from,
                                    "target_recall": self.target_recall,
                                    "approx_same_modal": self.approx_same_modal} | (
            {"nlist": self.nlist} if self.nlist is not None else {})

    # --- the lists ---------------------------------------------------------------------------
    def _added(self, packed):
        super()._added(packed)
        if self._cent is not None and self._assign is not None:
            _, a = kernels.knn(self._cent, packed, 1)
            self._assign = np.concatenate([self._assign, a[:, 0]])
        self._lists = None

    def _keep_rows(self, keep):
        super()._keep_rows(keep)
        if self._assign is not None:
            self._assign = self._assign[keep]
        self._lists = None

    def train(self) -> None:
        """Train the coarse quantizer on the codes held now and assign every code to a list."""
        n = self.ntotal
        nlist = min(self.nlist or default_nlist(n), max(1, n))
        self._cent = train_quantizer(self.codes, nlist, seed=self.seed)
        _, a = kernels.knn(self._cent, self.codes, 1)
        self._assign = a[:, 0].astype(np.int64)
        self._trained_n = n
        self._lists = None

    def _build_lists(self):
        if self._cent is None or self._assign is None or self.ntotal > 4 * max(1, self._trained_n):
            self.train()
        a = self._assign
        if len(a) and (a.min() < 0 or a.max() >= len(self._cent)):  # read from a damaged file
            raise HashIndexError("ivf: a list number out of range (the index file is damaged)")
        order = np.argsort(self._assign, kind="stable")  # rows ascending inside each list
        counts = np.bincount(self._assign, minlength=len(self._cent))
        ptr = np.zeros(len(self._cent) + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])
        self._lists = (np.ascontiguousarray(self.codes[order]), order.astype(np.int64), ptr)

    def prepare(self) -> None:
        """Build the lists now (training the quantizer if needed) rather than at the first search;
        a store calls it before saving, so the lists are saved with the codes (``_payload``)."""
        if self._lists is None and self.ntotal and kernels.kernel_name() == "c":
            self._build_lists()

    @property
    def n_lists(self) -> int:
        """Cells of the trained quantizer (0 before the first approximate search or ``train``)."""
        return 0 if self._cent is None else len(self._cent)

    # --- search --------------------------------------------------------------------------------
    def search(self, queries, k: int, exact: bool = False, nprobe: int | None = None):
        """Top-k: approximate over the ``nprobe`` nearest lists (default), or ``exact`` by MIH.
        Distances are exact Hamming distances either way."""
        if exact:
            return super().search(queries, k)
        q = self._queries(queries)
        k = self._check_k(k)
        if kernels.kernel_name() != "c" or self.ntotal == 0 or k > 2048:  # no compiled kernel, or a huge k
            return super().search(q, k)
        if self._lists is None:
            self._build_lists()
        codes, rows, ptr = self._lists
        npr = min(nprobe or self.nprobe, len(ptr) - 1)
        _, probe = kernels.knn(self._cent, q, npr, self.threads)  # (nq, nprobe) nearest cells, nearest first
        d, r = kernels.ivf_search(codes, rows, ptr, q, k, probe, self.threads)
        return d, self._map(r)

    # --- persistence: the quantizer, the assignment and the lists travel with the codes --------
    def _payload(self) -> list[bytes]:
        parts = super()._payload()
        if self._cent is None or self._assign is None:
            return parts
        parts += [self._cent.tobytes(), self._assign.astype("<i4").tobytes()]
        if self._lists is not None:  # built (a store prepares them before saving): saved as laid out
            codes, rows, ptr = self._lists
            parts += [codes.tobytes(), rows.astype("<i8").tobytes(), ptr.astype("<i8").tobytes()]
        return parts

    def _header_extra(self) -> dict:
        trained = self._cent is not None and self._assign is not None
        return {"ivf": {"trained": trained, "n_cells": self.n_lists, "trained_n": self._trained_n,
                        "lists": trained and self._lists is not None}}

    @classmethod
    def _from_payload(cls, header, payload, **options):
        """The lists, when saved, are views of the payload like the codes (a mapped file: the first
        approximate search reads only the lists it probes; rebuilding them for 10M codes took 3.8 s)."""
        n, nb = header["ntotal"], header["bits"] // 8
        base = n * nb + 8 * n
        extra = header.get("ivf") or {}
        idx = super()._from_payload(header, payload[:base], **options)
        if extra.get("trained"):
            nl = int(extra["n_cells"])
            lists = bool(extra.get("lists"))
            size = base + nl * nb + 4 * n + ((n * nb + 8 * n + 8 * (nl + 1)) if lists else 0)
            if len(payload) != size:
                raise HashIndexError(f"ivf payload has {len(payload)} bytes, {size} expected")
            idx._cent = np.frombuffer(payload[base:base + nl * nb], np.uint8).reshape(nl, nb).copy()
            at = base + nl * nb
            idx._assign = payload[at:at + 4 * n].view("<i4")  # checked when the lists are built
            idx._trained_n = int(extra.get("trained_n", n))
            if lists:
                at += 4 * n
                codes = payload[at:at + n * nb].reshape(n, nb)
                rows = payload[at + n * nb:at + n * nb + 8 * n].view("<i8")
                ptr = np.array(payload[at + n * nb + 8 * n:].view("<i8"), np.int64)
                if ptr[0] != 0 or ptr[-1] != n or (np.diff(ptr) < 0).any():  # the kernel trusts these bounds
                    raise HashIndexError("ivf payload: list bounds out of order (damaged)")
                if n and (int(rows.min()) < 0 or int(rows.max()) >= n):  # and these rows (8 B an item read)
                    raise HashIndexError(f"ivf payload: a list row outside 0..{n - 1} (damaged)")
                idx._lists = (codes, rows if rows.dtype == np.int64 else rows.astype(np.int64), ptr)
        return idx
