"""The Milvus backend (embedded milvus-lite) against brute force, and its persistence."""
import warnings

import numpy as np
import pytest

from cmhash.eval.hamming import hamming_pm1, pack_codes
from cmhash.index import HashIndexError, load_index, make_index

from test_index import brute_knn, data

pytest.importorskip("milvus_lite", reason="milvus-lite is not installed on this platform")
warnings.filterwarnings("ignore", message=".*pkg_resources.*")


@pytest.fixture(scope="module")
def milvus_ix(tmp_path_factory):
    path = tmp_path_factory.mktemp("milvus")
    db, q = data(64, n=600)
    ix = make_index("milvus", 64, uri=str(path / "m.db"), collection="t64")
    ids = np.arange(600) * 5 + 1
    ix.add(db, ids)
    yield ix, db, q, ids, path
    ix.close()


def test_search_matches_brute_force(milvus_ix):
    ix, db, q, ids, _ = milvus_ix
    for k in (1, 10, 75, 300):  # 75 cuts through the block of 71 duplicates
        d, i = ix.search(q, k)
        bd, bi = brute_knn(db, q, k)
        np.testing.assert_array_equal(d, bd)
        np.testing.assert_array_equal(i, ids[bi])


def test_range_search_matches_brute_force(milvus_ix):
    ix, db, q, ids, _ = milvus_ix
    dist = hamming_pm1(q[:6], db).astype(np.int64)
    lims, D, I = ix.range_search(q[:6], 26)
    for j in range(6):
        rows = np.flatnonzero(dist[j] <= 26)
        rows = rows[np.argsort(dist[j, rows], kind="stable")]
        np.testing.assert_array_equal(I[lims[j]:lims[j + 1]], ids[rows])
        np.testing.assert_array_equal(D[lims[j]:lims[j + 1]], dist[j, rows])


def test_remove_save_load_and_rollback(tmp_path):
    db, q = data(32, n=200)
    uri = str(tmp_path / "m.db")
    ix = make_index("milvus", 32, uri=uri, collection="t32")
    ix.add(db)
    assert ix.remove([0, 5, 9999]) == 2
    np.testing.assert_array_equal(ix.reconstruct([7]), pack_codes(db[[7]]))
    path = ix.save(tmp_path / "ix.cmhidx")
    before = ix.search(q, 20)
    ix.add(db[:4], ids=[1000, 1001, 1002, 1003])  # added but never saved: a crash before the save
    ix.close()
    back = load_index(path, uri=uri)
    assert back.ntotal == 198
    for a, b in zip(before, back.search(q, 20)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(HashIndexError, match="already exists"):
        make_index("milvus", 32, uri=uri, collection="t32")
    back.close()
