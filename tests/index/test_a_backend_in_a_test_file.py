"""An index backend written in a test file with the public decorator (``cmhash.register_index_backend``):
it builds, saves, reopens and searches, alone and inside a store, and the registry-wide tests
(``tests/test_registries.py``) check it against brute force beside the built-in ones."""
import numpy as np

import cmhash
from cmhash.index.base import HammingIndex, HashIndexError, load_index, make_index
from cmhash.index.store import IndexStore


@cmhash.register_index_backend("test-sorted", help="exact: distances by numpy, one sort per query (a test's)")
class SortedIndex(HammingIndex):
    def __init__(self, bits: int):
        super().__init__(bits)
        self._codes = np.zeros((0, self.nbytes), np.uint8)

    def add(self, codes, ids=None):
        codes = self._queries(codes)
        new = self._new_ids(len(codes), ids)
        self._codes, self._ids = np.concatenate([self._codes, codes]), np.concatenate([self._ids, new])
        return new

    def _dists(self, q):  # (nq, n)
        x = np.bitwise_xor(q[:, None, :], self._codes[None])
        return np.unpackbits(x, axis=2).sum(2)

    def search(self, queries, k):
        q, k = self._queries(queries), self._check_k(k)
        d = self._dists(q)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]  # ties: insertion order
        dist = np.take_along_axis(d, order, 1)
        pad = k - order.shape[1]
        return (np.pad(dist, ((0, 0), (0, pad)), constant_values=-1).astype(np.int32),
                np.pad(self._map(order), ((0, 0), (0, pad)), constant_values=-1))

    def range_search(self, queries, radius):
        q, radius = self._queries(queries), self._check_radius(radius)
        d = self._dists(q)
        lims, dist, ids = [0], [], []
        for row in d:
            hit = np.nonzero(row <= radius)[0]
            hit = hit[np.argsort(row[hit], kind="stable")]  # by distance, then insertion
            dist.append(row[hit])
            ids.append(self._ids[hit])
            lims.append(lims[-1] + len(hit))
        return (np.asarray(lims, np.int64), np.concatenate(dist).astype(np.int32) if dist else np.zeros(0, np.int32),
                np.concatenate(ids) if ids else np.zeros(0, np.int64))

    def remove(self, ids):
        keep = ~np.isin(self._ids, np.asarray(ids))
        self._codes, self._ids = self._codes[keep], self._ids[keep]
        return int((~keep).sum())

    def reconstruct(self, ids):
        pos = {int(i): r for r, i in enumerate(self._ids)}
        missing = [int(i) for i in np.asarray(ids).ravel() if int(i) not in pos]
        if missing:
            raise HashIndexError(f"ids not in the index: {missing[:5]}")
        return self._codes[[pos[int(i)] for i in np.asarray(ids).ravel()]]

    @property
    def codes(self):
        return self._codes

    def _payload(self):
        return [self._codes.tobytes(), self._ids.astype("<i8").tobytes()]

    @classmethod
    def _from_payload(cls, header, payload, **kw):
        ix = cls(header["bits"])
        n, nb = header["ntotal"], header["bits"] // 8
        codes = np.frombuffer(payload[:n * nb], np.uint8).reshape(n, nb)
        ix.add(codes.copy(), np.frombuffer(payload[n * nb:], "<i8").copy())
        return ix


def test_a_backend_from_a_test_file_builds_saves_reopens_and_searches(tmp_path):
    rng = np.random.default_rng(3)
    codes, q = rng.integers(0, 256, (50, 4), dtype=np.uint8), rng.integers(0, 256, (3, 4), dtype=np.uint8)
    ix = make_index("test-sorted", 32)
    assert ix.backend == "test-sorted"
    ix.add(codes)
    d, i = ix.search(q, 5)
    again = load_index(ix.save(tmp_path / "x.cmhidx"), bits=32)
    assert isinstance(again, SortedIndex) and (again.search(q, 5)[1] == i).all()

    store = IndexStore.create(tmp_path / "store", 32, backend="test-sorted")
    store.add(codes, codes, items=[{"caption": f"item {n}"} for n in range(50)])
    store.close()
    reopened = IndexStore.open(tmp_path / "store")
    assert reopened.manifest["backend"] == "test-sorted" and reopened.info()["backend"] == "test-sorted"
    hits = reopened.search(q, 5, target="text")
    assert [[h["id"] for h in r] for r in hits] == i.tolist()
    assert hits[0][0]["caption"] == f"item {i[0, 0]}" and hits[0][0]["distance"] == d[0, 0]
    reopened.close()
