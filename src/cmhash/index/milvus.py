"""Milvus behind the ``HammingIndex`` interface: a BINARY_VECTOR field, the HAMMING metric and the
exact BIN_FLAT index.

The default ``uri`` is a local file served by the embedded ``milvus-lite`` (no server to run);
an ``http://host:19530`` URI reaches a Milvus server or cluster for collections that outgrow one
machine (there ``index_type="BIN_IVF_FLAT"``, approximate, with ``nlist``/``nprobe``, is
available as well; milvus-lite accepts only BIN_FLAT). The tests run the same exactness tests
against milvus-lite and against a real Milvus 2.3.5 server (the ``milvus`` package's embedded
standalone server, tests/conftest.py).
milvus-lite 2.5.1 is pinned because newer releases refuse binary vectors (measured: their
collections reject BINARY_VECTOR fields).

Rows get a primary key ``seq`` that grows with insertion, and carry the user's id. Milvus orders
equal distances as it likes; to return the evaluation's order exactly, a query whose fetched
list is still at its k-th distance in the last slot is fetched again with twice the limit (up to
Milvus's 16,384 cap), and the list is sorted by (distance, seq). ``range_search`` widens the limit
the same way until it passes the radius.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..registry import register_index_backend
from ..utils import require
from .base import HammingIndex, HashIndexError, as_packed, widen_to_exact

MAX_LIMIT = 16384


def _client(uri: str, token: str | None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # milvus-lite imports pkg_resources (deprecated)
        MilvusClient = require("pymilvus", "milvus", "the milvus backend").MilvusClient
        try:
            return MilvusClient(uri, token=token) if token else MilvusClient(uri)
        except Exception as e:  # pymilvus raises its own exception types
            raise HashIndexError(f"cannot open Milvus at {uri!r}: {e}") from None


@register_index_backend("milvus", help="Milvus (embedded milvus-lite file, or uri=http://host:19530)")
class MilvusIndex(HammingIndex):
    @classmethod
    def store_options(cls, folder: Path, modality: str, params: dict, create: bool) -> dict:
        """In a store: both modalities' collections in one embedded file ``folder/milvus.db`` (or
        the server of ``uri``), named ``<collection_prefix>_<modality>``, replaced at a build."""
        uri = params.get("uri", str(Path(folder) / "milvus.db"))
        if not create:
            return {"uri": uri}
        opts = {k: v for k, v in params.items() if k != "collection_prefix"}
        return {**opts, "uri": uri, "collection": f"{params.get('collection_prefix', 'cmhash')}_{modality}",
                "overwrite": True}

    @classmethod
    def store_files(cls, folder: Path) -> list[Path]:
        return [Path(folder) / "milvus.db"]

    def __init__(self, bits: int, uri: str = "cmhash-milvus.db", collection: str = "cmhash_codes",
                 token: str | None = None, index_type: str = "BIN_FLAT", overwrite: bool = False,
                 batch: int = 256, nlist: int = 1024, nprobe: int = 16, _attach: bool = False):
        super().__init__(bits)
        if not collection.replace("_", "").isalnum():
            raise HashIndexError(f"Milvus collection names are letters, digits and _: {collection!r}")
        if index_type not in ("BIN_FLAT", "BIN_IVF_FLAT"):
            raise HashIndexError(f"Milvus binary index types are BIN_FLAT (exact) and BIN_IVF_FLAT (approximate: "
                                 f"nlist, nprobe), got {index_type!r}")
        self.uri, self.collection, self.token, self.index_type, self.batch = str(uri), collection, token, index_type, batch
        self.nlist, self.nprobe = int(nlist), int(nprobe)
        self._seq = np.zeros(0, np.int64)
        if "://" not in self.uri:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        self._c = _client(self.uri, token)
        exists = self._c.has_collection(collection)
        if exists and not _attach:
            if not overwrite:
                raise HashIndexError(f"Milvus collection {collection!r} already exists at {self.uri}; "
                                     "load its index file, or pass overwrite=True")
            self._c.drop_collection(collection)
            exists = False
        if not exists:
            from pymilvus import DataType, MilvusClient

            schema = MilvusClient.create_schema(auto_id=False)
            schema.add_field("seq", DataType.INT64, is_primary=True)
            schema.add_field("item", DataType.INT64)
            schema.add_field("code", DataType.BINARY_VECTOR, dim=self.bits)
            params = self._c.prepare_index_params()
            params.add_index(field_name="code", index_type=index_type, metric_type="HAMMING",
                             params={"nlist": self.nlist} if index_type == "BIN_IVF_FLAT" else {})
            self._c.create_collection(collection, schema=schema, index_params=params, consistency_level="Strong")

    def _params(self) -> dict:
        return {"uri": self.uri, "collection": self.collection, "index_type": self.index_type} | (
            {"nlist": self.nlist, "nprobe": self.nprobe} if self.index_type == "BIN_IVF_FLAT" else {})

    def add(self, codes, ids=None) -> np.ndarray:
        packed = as_packed(codes, self.bits)
        ids = self._new_ids(len(packed), ids)
        start = int(self._seq[-1]) + 1 if len(self._seq) else 0
        seq = np.arange(start, start + len(packed), dtype=np.int64)
        for s in range(0, len(packed), 10000):
            rows = [{"seq": int(a), "item": int(b), "code": c.tobytes()}
                    for a, b, c in zip(seq[s:s + 10000], ids[s:s + 10000], packed[s:s + 10000])]
            self._c.insert(self.collection, rows)
        self._seq = np.concatenate([self._seq, seq])
        self._ids = np.concatenate([self._ids, ids])
        return ids

    def _fetch(self, q: np.ndarray, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for s in range(0, len(q), self.batch):
            res = self._c.search(self.collection, data=[x.tobytes() for x in q[s:s + self.batch]], limit=limit,
                                 anns_field="code", search_params={"metric_type": "HAMMING"} | (
                                     {"params": {"nprobe": self.nprobe}} if self.index_type == "BIN_IVF_FLAT" else {}))
            for hits in res:
                d = np.array([h["distance"] for h in hits], np.float64).round().astype(np.int32)
                seq = np.array([h["id"] for h in hits], np.int64)
                o = np.lexsort((seq, d))
                out.append((d[o], seq[o]))
        return out

    def _rows(self, seq: np.ndarray) -> np.ndarray:
        return np.searchsorted(self._seq, seq)

    def search(self, queries, k: int):
        q = self._queries(queries)
        k = self._check_k(k)
        od, seq = widen_to_exact(len(q), k, self.ntotal, lambda idx, limit: self._fetch(q[idx], limit), MAX_LIMIT)
        rows = np.where(seq >= 0, self._rows(np.maximum(seq, 0)), -1)
        return od, self._map(rows)

    def range_search(self, queries, radius: int):
        q = self._queries(queries)
        radius = self._check_radius(radius)
        lims, D, rows = [0], [], []
        for x in q:
            fetch = min(self.ntotal, 64, MAX_LIMIT)
            while True:
                d, seq = self._fetch(x[None], fetch)[0] if fetch else (np.zeros(0, np.int32), np.zeros(0, np.int64))
                if not len(d) or d[-1] > radius or fetch >= min(self.ntotal, MAX_LIMIT):
                    break
                fetch = min(self.ntotal, 4 * fetch, MAX_LIMIT)
            sel = d <= radius
            D.append(d[sel])
            rows.append(self._rows(seq[sel]))
            lims.append(lims[-1] + int(sel.sum()))
        D = np.concatenate(D) if D else np.zeros(0, np.int32)
        rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        return np.asarray(lims, np.int64), D.astype(np.int32), self._map(rows)

    def remove(self, ids) -> int:
        ids = np.asarray(ids, np.int64).ravel()
        drop = np.isin(self._ids, ids)
        if drop.any():
            self._c.delete(self.collection, ids=self._seq[drop].tolist())
            self._seq, self._ids = self._seq[~drop], self._ids[~drop]
        return int(drop.sum())

    def reconstruct(self, ids) -> np.ndarray:
        ids = np.asarray(ids, np.int64).ravel()
        pos = {int(v): i for i, v in enumerate(self._ids)}
        missing = [int(i) for i in ids if int(i) not in pos]
        if missing:
            raise HashIndexError(f"ids not in the index: {missing[:5]}")
        seqs = [int(self._seq[pos[int(i)]]) for i in ids]
        got = self._c.get(self.collection, ids=seqs, output_fields=["code"])
        by = {r["seq"]: np.frombuffer(bytes(r["code"][0] if isinstance(r["code"], list) else r["code"]), np.uint8)
              for r in got}
        return np.stack([by[s] for s in seqs])

    def close(self) -> None:
        try:
            self._c.close()
        except Exception:  # noqa: BLE001 - closing a dead connection is not an error
            pass

    def _payload(self) -> list[bytes]:
        try:
            self._c.flush(self.collection)
        except Exception:  # noqa: BLE001 - milvus-lite flushes on its own
            pass
        return [self._seq.astype("<i8").tobytes(), self._ids.astype("<i8").tobytes()]

    @classmethod
    def _from_payload(cls, header, payload, **options):
        params = {**header.get("params", {}), **options}
        idx = cls(header["bits"], _attach=True, **params)
        n = header["ntotal"]
        if len(payload) != 16 * n:
            raise HashIndexError(f"index payload has {len(payload)} bytes, {16 * n} expected")
        idx._seq = np.frombuffer(payload[: 8 * n], "<i8").astype(np.int64)
        idx._ids = np.frombuffer(payload[8 * n:], "<i8").astype(np.int64)
        last = int(idx._seq[-1]) if n else -1
        # rows inserted after the index file was last saved (a crash mid-add): roll them back
        idx._c.delete(idx.collection, filter=f"seq > {last}")
        got = idx._c.query(idx.collection, filter="seq >= 0", output_fields=["count(*)"])
        count = int(got[0]["count(*)"]) if got else n
        if count != n:
            raise HashIndexError(f"Milvus collection {idx.collection!r} at {idx.uri} holds {count} rows, the index "
                                 f"file {n}: they are out of step (rows deleted outside cmhash?)")
        return idx

