"""Hamming kernels: the compiled ``_kernels`` module when it was built, numpy otherwise.

The lowest layer of cmhash's search and evaluation: the indexes (``cmhash.index``) and the metrics
(``cmhash.eval``) both call it, and it depends on neither. Every function takes packed codes
(n, nbytes) uint8 in faiss's layout (``cmhash.codes``) and returns exact results; ties are
broken by row order (the evaluation's order). The compiled kernels release the GIL and are run on
``threads`` Python threads, each taking a contiguous slice of the queries.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:  # built by setup.py when a C compiler is available
    from . import _kernels as _C
except ImportError:  # pragma: no cover - depends on the install
    _C = None
    import warnings

    # said once, at import: a source install without a C compiler succeeds, but every search and
    # metric then runs in numpy (`cmhash index info` says "numpy fallback")
    warnings.warn("cmhash: the compiled Hamming kernels are not built (no C compiler when it was installed?): "
                  "search and evaluation use the numpy fallback, 50-200x slower. Install a C compiler (gcc, clang, "
                  "MSVC) and reinstall cmhash, or install a binary wheel.", RuntimeWarning, stacklevel=2)

_POOL: ThreadPoolExecutor | None = None


_POP8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def dist_dtype(k: int):
    """The smallest unsigned dtype that holds distances of K-bit codes."""
    return np.uint8 if k <= 255 else np.uint16 if k <= 65535 else np.int64


def hamming_packed(q, db) -> np.ndarray:
    """Hamming distances between packed uint8 codes (nq, K/8) x (ndb, K/8) -> (nq, ndb), numpy."""
    from ..utils import CmhashError

    q, db = np.asarray(q), np.asarray(db)
    if q.dtype != np.uint8 or db.dtype != np.uint8 or q.shape[1:] != db.shape[1:]:
        raise CmhashError(f"packed codes must be uint8 with equal widths: {q.dtype}{q.shape} vs {db.dtype}{db.shape}")
    k = q.shape[1] * 8
    out = np.empty((len(q), len(db)), dist_dtype(k))
    if q.shape[1] % 8 == 0:  # view as uint64 words: 8x fewer xor/popcount ops
        q, db = q.view(np.uint64), db.view(np.uint64)
    step = max(1, (1 << 22) // max(1, len(db) * q.shape[1]))
    count = getattr(np, "bitwise_count", None)
    for s in range(0, len(q), step):
        x = q[s:s + step, None, :] ^ db[None, :, :]
        pc = count(x) if count is not None else _POP8[x.view(np.uint8)]
        out[s:s + step] = pc.sum(axis=2, dtype=np.int64 if k > 255 else np.uint16)
    return out


def kernel_name() -> str:
    """'c' when the compiled kernels are in use, 'numpy' otherwise."""
    return "c" if _C is not None else "numpy"


# The flat scan's paths, by level (``bindings.c``: scan_level): what CMHASH_KERNEL may name (``env.KERNELS``).
LEVELS = {"scalar": 1, "avx2": 2, "avx512": 3}
_NAMES = {0: "portable", 1: "popcnt", 2: "avx2", 3: "avx512-vpopcntdq"}


def kernel_cap() -> int:
    """The highest path the kernels may take: CMHASH_KERNEL=scalar|avx2|avx512 forces one (an error
    when this CPU lacks it), unset, empty or auto lets them take the best this CPU has (0)."""
    from .. import env
    from ..utils import CmhashError

    want = env.kernel()
    if want is None or _C is None:
        return 0
    if LEVELS[want] > _C.cpu_level():
        have = [n for n, v in LEVELS.items() if v <= _C.cpu_level()]
        raise CmhashError(f"CMHASH_KERNEL={want}: this CPU lacks it (it has {', '.join(have)})")
    return LEVELS[want]


def kernel_variant(nbytes: int = 8) -> str:
    """The path the flat scan takes for codes of ``nbytes`` bytes on this CPU: 'avx512-vpopcntdq'
    (8 codes per instruction), 'avx2' (byte-sliced blocks, codes up to 128 bits), 'popcnt' (scalar),
    'portable', or 'numpy fallback' when the kernels are not built. CMHASH_KERNEL caps it."""
    return _NAMES[_C.scan_level(kernel_cap(), int(nbytes))] if _C is not None else "numpy fallback"


def default_threads() -> int:
    from .. import env

    return env.threads()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(8, default_threads()), thread_name_prefix="cmhash-kernel")
    return _POOL


def _split(nq: int, threads: int, min_rows: int = 8) -> list[tuple[int, int]]:
    parts = max(1, min(threads, nq // min_rows if nq >= min_rows else 1))
    edges = np.linspace(0, nq, parts + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def _run(fn, nq: int, threads: int) -> None:
    parts = _split(nq, threads)
    if len(parts) == 1:
        fn(*parts[0])
        return
    for f in [_pool().submit(fn, a, b) for a, b in parts]:
        f.result()


def dists(db: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(nq, n) uint16 Hamming distances."""
    n, nb = db.shape
    out = np.empty((len(q), n), np.uint16)
    if _C is None or n == 0 or len(q) == 0:
        out[:] = hamming_packed(q, db) if n and len(q) else 0
        return out
    _C.dists(db.ctypes.data, n, nb, q.ctypes.data, len(q), out.ctypes.data)
    return out


def knn_numpy(db: np.ndarray, q: np.ndarray, k: int, chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """The naive reference: distance matrix by numpy popcount, then a stable sort per query."""
    n = len(db)
    od = np.full((len(q), k), -1, np.int32)
    oi = np.full((len(q), k), -1, np.int64)
    kk = min(k, n)
    if kk == 0:
        return od, oi
    step = max(1, chunk // max(1, n // 1024 + 1))
    for s in range(0, len(q), step):
        d = hamming_packed(q[s:s + step], db).astype(np.int32)  # (b, n)
        if kk < n:  # candidates: everything up to the k-th distance, then a stable order
            part = np.argpartition(d, kk - 1, axis=1)[:, :kk]
            kth = np.take_along_axis(d, part, 1).max(1, keepdims=True)
            key = np.where(d <= kth, d, np.iinfo(np.int32).max)
        else:
            key = d
        order = np.argsort(key, axis=1, kind="stable")[:, :kk]
        od[s:s + step, :kk] = np.take_along_axis(d, order, 1)
        oi[s:s + step, :kk] = order
    return od, oi


def knn(db: np.ndarray, q: np.ndarray, k: int, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows of ``db`` for each query: (distances int32 (nq, k), rows int64 (nq, k)),
    ordered by (distance, row); -1 where the database has fewer than k rows."""
    n, nb = db.shape
    kk = min(k, n)
    # the kernel keeps (bits + 1) x k row slots per query of a block of 64: past 64 MB (a k in the
    # tens of thousands) the chunked numpy path, whose memory is bounded, is used instead
    if _C is None or kk == 0 or 64 * (8 * nb + 1) * kk * 8 > (64 << 20):
        return knn_numpy(db, q, k)
    od = np.full((len(q), k), -1, np.int32)
    oi = np.full((len(q), k), -1, np.int64)
    d_out, i_out = (od, oi) if kk == k else (np.empty((len(q), kk), np.int32), np.empty((len(q), kk), np.int64))

    cap = kernel_cap()

    def part(a, b):
        _C.knn(db.ctypes.data, n, nb, q[a:b].ctypes.data, b - a, kk, d_out[a:b].ctypes.data, i_out[a:b].ctypes.data,
               cap)

    _run(part, len(q), threads or default_threads())
    if kk < k:
        od[:, :kk], oi[:, :kk] = d_out, i_out
    return od, oi


def ivf_search(codes: np.ndarray, rows: np.ndarray, list_ptr: np.ndarray, q: np.ndarray, k: int,
               probe: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each query over the lists it probes (see ``ivf.c``): ``codes`` (n, nbytes)
    grouped by list, ``rows`` (n,) their row numbers, ``list_ptr`` (nlist + 1,) the list bounds,
    ``probe`` (nq, nprobe) int64 list numbers. Exact distances, ordered by (distance, row); -1 where
    fewer than k codes were probed. Compiled kernel only."""
    nq, nb = q.shape
    od = np.empty((nq, k), np.int32)
    oi = np.empty((nq, k), np.int64)
    probe = np.ascontiguousarray(probe, np.int64)
    cap = kernel_cap()

    def part(a, b):
        _C.ivf(codes.ctypes.data, rows.ctypes.data, list_ptr.ctypes.data, len(list_ptr) - 1, nb, q[a:b].ctypes.data,
               b - a, k, probe[a:b].ctypes.data, probe.shape[1], od[a:b].ctypes.data, oi[a:b].ctypes.data, cap)

    _run(part, nq, threads or default_threads())
    return od, oi


def label_bits(labels) -> np.ndarray:
    """Multi-hot (or non-negative) labels (n, L) -> (n, ceil(L/64)) uint64 bit sets of the labels > 0."""
    a = np.asarray(labels) > 0
    words = max(1, -(-a.shape[1] // 64))
    packed = np.zeros((len(a), words * 8), np.uint8)
    packed[:, : -(-a.shape[1] // 8)] = np.packbits(a, axis=1, bitorder="little")
    return packed.view(np.uint64)


def rank_metrics(db: np.ndarray, q: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray, topk: int,
                 threads: int | None = None):
    """AP, AP@topk and per-distance histograms of each query's Hamming ranking of ``db`` (ties by
    database index), by counting sort in the compiled kernel; None when it is not built.
    ``q_labels``/``db_labels`` are ``label_bits``. Returns (ap (nq,), apk (nq,), items per distance
    (nq, K+1) int32, relevant items per distance (nq, K+1) int32)."""
    if _C is None or not hasattr(_C, "rank"):
        return None
    n, nb = db.shape
    nq, K = len(q), nb * 8
    ap, apk = np.zeros(nq), np.zeros(nq)
    hn, hr = np.zeros((nq, K + 1), np.int32), np.zeros((nq, K + 1), np.int32)
    W = q_labels.shape[1]

    def part(a, b):
        _C.rank(db.ctypes.data, n, nb, q[a:b].ctypes.data, b - a, q_labels[a:b].ctypes.data, db_labels.ctypes.data, W,
                int(topk), ap[a:b].ctypes.data, apk[a:b].ctypes.data, hn[a:b].ctypes.data, hr[a:b].ctypes.data)

    _run(part, nq, threads or default_threads())
    return ap, apk, hn, hr


def substr_keys(db: np.ndarray, off: int, length: int) -> np.ndarray:
    """uint32 value of bits [off, off + length) of every code (bit j = bit j % 8 of byte j // 8)."""
    n, nb = db.shape
    if _C is not None:
        out = np.empty(n, np.uint32)
        _C.substr(db.ctypes.data, n, nb, off, length, out.ctypes.data)
        return out
    bits = np.unpackbits(db, axis=1, bitorder="little")[:, off:off + length].astype(np.uint64)
    return (bits << np.arange(length, dtype=np.uint64)).sum(1).astype(np.uint32)


def mih_knn(db, q, k, offs, lens, ptrs, ptr_base, ids, threads: int | None = None, with_visits: bool = False,
            budget: int | None = None):
    """Exact top-k by multi-index hashing (compiled kernel only; see mih.c). A query whose
    search exceeds ``budget`` (default: half a flat scan's work) gets visits -1 and is scanned
    exhaustively instead."""
    n, nb = db.shape
    od = np.empty((len(q), k), np.int32)
    oi = np.empty((len(q), k), np.int64)
    visits = np.zeros(len(q), np.int64)

    cap = kernel_cap()

    def part(a, b):
        _C.mih_knn(db.ctypes.data, n, nb, q[a:b].ctypes.data, b - a, k, len(offs), offs.ctypes.data,
                   lens.ctypes.data, ptrs.ctypes.data, ptr_base.ctypes.data, ids.ctypes.data,
                   od[a:b].ctypes.data, oi[a:b].ctypes.data, visits[a:b].ctypes.data, budget, cap)

    budget = n // 2 if budget is None else int(budget)
    _run(part, len(q), threads or default_threads())
    far = np.flatnonzero(visits < 0)
    if len(far):
        od[far], oi[far] = knn(db, np.ascontiguousarray(q[far]), k, threads)
    return (od, oi, visits) if with_visits else (od, oi)
