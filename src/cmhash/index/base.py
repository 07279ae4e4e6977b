"""The ``HammingIndex`` interface (faiss-like) and its file format.

An index holds packed binary codes (n, K/8) uint8 in faiss's layout (see ``cmhash.codes``
for the sign convention: a code value >= 0 is bit 1, bit j in byte j // 8 at position j % 8) and
one int64 id per code. Every backend returns exact results in the evaluation's order: by Hamming
distance, then by insertion order. Slots beyond the number of stored codes hold id -1 and
distance -1 (faiss's convention for ids).

File format (one file, written atomically): ``CMHIDX01`` magic, a little-endian uint32 header
length, a JSON header (backend, bits, ntotal, parameters, payload size and sha256), then the
payload (codes, then ids). A truncated or altered file fails its size or checksum check; a file of
another code length fails ``load(path, bits=...)``.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..codes import check_code_length, pack_codes
from ..registry import INDEX_BACKENDS
from ..utils import CmhashError, atomic_path

MAGIC = b"CMHIDX01"


class HashIndexError(CmhashError):
    """Bad codes, ids or index files."""


def as_packed(codes, bits: int, what: str = "codes") -> np.ndarray:
    """Packed (n, bits/8) uint8 codes from packed codes, {-1,+1} / {0,1} bit arrays (n, bits) or real
    values (n, bits; sign convention >= 0 -> 1). One code may be given as a 1-D array."""
    a = np.asarray(codes)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2:
        raise HashIndexError(f"{what} must be 2-D (n, {bits // 8}) packed uint8 or (n, {bits}) bits, got shape {a.shape}")
    if a.dtype == np.uint8 and a.shape[1] == bits // 8:
        return np.ascontiguousarray(a)
    if a.shape[1] == bits:
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise HashIndexError(f"{what} contain NaN or inf")
        if a.dtype.kind in "ui" and a.min(initial=0) >= 0 and a.max(initial=0) <= 1:
            a = a.astype(np.int8) * 2 - 1  # {0,1} bits
        return np.ascontiguousarray(pack_codes(a))
    raise HashIndexError(f"{what} have width {a.shape[1]} ({a.dtype}); this index holds {bits}-bit codes: "
                      f"give (n, {bits // 8}) uint8 packed codes or (n, {bits}) bits")


class HammingIndex:
    """Exact Hamming k-NN over packed codes with int64 ids.

    ``add(codes, ids=None)``, ``search(q, k) -> (D, I)``, ``range_search(q, radius) -> (lims, D, I)``
    (faiss's layout: the results of query i are D[lims[i]:lims[i+1]], ordered by distance then
    insertion), ``remove(ids) -> count``, ``ntotal``, ``save(path)`` and ``load_index(path)``.
    """

    backend: ClassVar[str] = "?"  # set by ``@register_index_backend("name")`` (``cmhash.registry``)
    #: an approximate backend (``store.planning``) also has ``approx_same_modal``, ``approx_from``,
    #: ``target_recall``, ``search(q, k, nprobe=...)``, ``search(q, k, exact=True)`` and ``calibrate``
    approximate: ClassVar[bool] = False

    @classmethod
    def store_options(cls, folder: Path, modality: str, params: dict, create: bool) -> dict:
        """What a store (``index.store``) passes to this backend for its index of ``modality`` in
        ``folder``: ``create=True``: the constructor's keywords, from the store's ``backend_params``;
        ``False``: ``load_index``'s keywords when the store opens. A backend that keeps state outside
        its index file (e.g. a database) says here where it lives."""
        return dict(params) if create else {}

    @classmethod
    def store_files(cls, folder: Path) -> list[Path]:
        """Files besides the index files that a store of this backend in ``folder`` holds (counted
        by ``cmhash index info``)."""
        return []

    def __init__(self, bits: int):
        try:
            self.bits = check_code_length(bits)
        except CmhashError as e:
            raise HashIndexError(str(e)) from None
        self.nbytes = self.bits // 8
        self._ids = np.zeros(0, np.int64)

    # --- ids -----------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def _new_ids(self, n: int, ids) -> np.ndarray:
        if ids is None:
            start = int(self._ids.max()) + 1 if len(self._ids) else 0
            return np.arange(start, start + n, dtype=np.int64)
        ids = np.asarray(ids)
        if ids.ndim != 1 or len(ids) != n:
            raise HashIndexError(f"ids must be a 1-D array of {n} integers, got shape {ids.shape}")
        if ids.dtype.kind not in "iu":
            raise HashIndexError(f"ids must be integers, got {ids.dtype}")
        ids = ids.astype(np.int64)
        if (ids < 0).any():
            raise HashIndexError("ids must be >= 0 (-1 marks an empty result slot)")
        if len(np.unique(ids)) != n:
            raise HashIndexError("ids repeat within this add")
        if len(self._ids) and np.isin(ids, self._ids).any():
            dup = ids[np.isin(ids, self._ids)][:5].tolist()
            raise HashIndexError(f"ids already in the index: {dup}")
        return ids

    def _map(self, rows: np.ndarray) -> np.ndarray:
        if rows.size and rows.min() >= 0:  # every slot filled: one gather
            return self._ids[rows]
        out = np.full(rows.shape, -1, np.int64)
        ok = rows >= 0
        out[ok] = self._ids[rows[ok]]
        return out

    def _queries(self, queries) -> np.ndarray:
        return as_packed(queries, self.bits, "queries")

    @staticmethod
    def _check_k(k) -> int:
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise HashIndexError(f"k must be a positive integer, got {k!r}")
        return int(k)

    def _check_radius(self, radius) -> int:
        if not isinstance(radius, (int, np.integer)) or radius < 0:
            raise HashIndexError(f"radius must be a non-negative integer, got {radius!r}")
        return int(radius)

    # --- interface -----------------------------------------------------------------------------
    def add(self, codes, ids=None) -> np.ndarray:
        raise NotImplementedError

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def range_search(self, queries, radius: int):
        raise NotImplementedError

    def remove(self, ids) -> int:
        raise NotImplementedError

    def reconstruct(self, ids) -> np.ndarray:
        """Packed codes of ``ids`` (in the order given)."""
        raise NotImplementedError

    # --- persistence ---------------------------------------------------------------------------
    def _params(self) -> dict:
        return {}

    def _payload(self) -> list[bytes]:
        raise NotImplementedError

    def _header_extra(self) -> dict:
        """More header fields a backend needs to read its payload back (e.g. ivf's trained lists)."""
        return {}

    def save(self, path) -> Path:
        """Write the index to ``path`` atomically (the previous file stays intact on a crash)."""
        parts = self._payload()
        h = hashlib.sha256()
        for p in parts:
            h.update(p)
        header = {"format": "cmhash-index-v1", "backend": self.backend, "bits": self.bits, "ntotal": self.ntotal,
                  "params": self._params(), "payload_bytes": sum(len(p) for p in parts), "sha256": h.hexdigest(),
                  **self._header_extra()}
        hb = json.dumps(header).encode()
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(MAGIC + struct.pack("<I", len(hb)) + hb)
                for p in parts:
                    f.write(p)
        return path

    @classmethod
    def _from_payload(cls, header: dict, payload: np.ndarray) -> "HammingIndex":
        """The index from its header and payload bytes ((payload_bytes,) uint8: in memory, or a
        read-only mapping of the file, ``load_index(mmap=True)``)."""
        raise NotImplementedError


def widen_to_exact(nq: int, k: int, n: int, fetch, cap: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k in (distance, key) order from a backend whose nearest-``limit`` lists are exact in
    distance but not in tie order (faiss, Milvus): a query whose list still holds its k-th distance
    in the last slot is fetched again with twice the limit (up to ``cap``), so every code at the
    k-th distance is seen before the list is cut. ``fetch(query_indices, limit)`` returns, per
    query, (distances, keys) sorted by (distance, key). Slots past ``n`` hold -1."""
    od = np.full((nq, k), -1, np.int32)
    ok = np.full((nq, k), -1, np.int64)
    cap = n if cap is None else min(n, cap)
    if cap == 0 or nq == 0:
        return od, ok
    kk = min(k, cap)
    todo, limit = np.arange(nq), min(cap, 2 * kk)  # a margin past the k-th distance settles most at once
    while len(todo):
        keep = []
        for j, (d, key) in enumerate(fetch(todo, limit)):
            if len(d) > kk and d[-1] == d[kk - 1] and limit < cap:
                keep.append(j)
                continue
            m = min(kk, len(d))
            od[todo[j], :m], ok[todo[j], :m] = d[:m], key[:m]
        todo, limit = todo[keep], min(cap, 2 * limit)
    return od, ok


def read_header(path) -> tuple[dict, int]:
    path = Path(path)
    if not path.is_file():
        raise HashIndexError(f"{path}: index file not found")
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:8] != MAGIC:
            raise HashIndexError(f"{path}: not a cmhash index file (bad magic)")
        (hl,) = struct.unpack("<I", head[8:])
        raw = f.read(hl)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HashIndexError(f"{path}: index header is truncated or corrupt") from None
    return header, 12 + hl


def load_index(path, bits: int | None = None, verify: bool = True, mmap: bool = False, **options) -> HammingIndex:
    """Read an index written by ``save``; with ``bits`` it must hold codes of that length.

    The magic, header and file size are checked always; the payload's sha256 when ``verify`` (it
    reads the whole file). ``mmap=True`` maps the payload read-only instead of reading it: the codes
    and ids are pages of the file, read when a search touches them, so opening costs the header only
    (the flat, mih and ivf backends keep the mapping until a change copies it; faiss and Milvus
    read it into their own structures). Index files are never changed once written (a store writes
    a new generation), so the mapping stays valid."""
    path = Path(path)
    header, start = read_header(path)
    size = path.stat().st_size
    if size != start + header.get("payload_bytes", -1):
        raise HashIndexError(f"{path}: file is {size} bytes, the header announces {start + header.get('payload_bytes', 0)}"
                          " (truncated or appended to)")
    if bits is not None and header["bits"] != bits:
        raise HashIndexError(f"{path}: holds {header['bits']}-bit codes, {bits}-bit codes expected")
    if header.get("backend") not in INDEX_BACKENDS:
        raise HashIndexError(f"{path}: unknown backend {header.get('backend')!r}; "
                             f"known: {', '.join(INDEX_BACKENDS.names())}")
    cls = INDEX_BACKENDS.get(header["backend"])
    n = int(header["payload_bytes"])
    if mmap and n:
        payload = np.memmap(path, np.uint8, mode="r", offset=start, shape=(n,))
    else:
        with open(path, "rb") as f:
            f.seek(start)
            payload = np.frombuffer(f.read(), np.uint8)
    if verify:
        h = hashlib.sha256()
        for s in range(0, n, 1 << 24):
            h.update(payload[s:s + (1 << 24)])
        if h.hexdigest() != header["sha256"]:
            raise HashIndexError(f"{path}: checksum mismatch (the file was altered or damaged)")
    return cls._from_payload(header, payload, **options)


def make_index(backend: str, bits: int, **params) -> HammingIndex:
    """A new, empty index: ``flat`` (cmhash's kernel), ``faiss``, ``mih``, ``ivf`` or ``milvus``."""
    from ..overrides import check_kwargs

    if backend not in INDEX_BACKENDS:
        raise HashIndexError(f"unknown index backend {backend!r}; known: {', '.join(INDEX_BACKENDS.names())}")
    cls = INDEX_BACKENDS.get(backend)
    try:
        params = check_kwargs(cls, params, f"{backend} backend")  # unknown or mistyped --param values
    except CmhashError as e:
        raise HashIndexError(str(e)) from None
    try:
        return cls(bits, **params)
    except (ValueError, TypeError) as e:  # a parameter out of its range (e.g. mih m=0)
        raise HashIndexError(f"{backend} backend: {e}") from None
