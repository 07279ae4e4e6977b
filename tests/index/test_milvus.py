"""The Milvus backend against brute force, and its persistence: each test runs against the embedded
milvus-lite file and against a real Milvus server (tests/conftest.py: milvus_server)."""
import warnings

import numpy as np
import pytest

from cmhash.eval.hamming import hamming_pm1, pack_codes, unpack_codes
from cmhash.index import HashIndexError, load_index, make_index

from test_index import brute_knn, data

pytest.importorskip("milvus_lite", reason="milvus-lite is not installed on this platform")
warnings.filterwarnings("ignore", message=".*pkg_resources.*")


@pytest.fixture(scope="module", params=["lite", "server"])
def where(request, tmp_path_factory):
    """(kind, a function name -> (uri, collection)) for milvus-lite files or the Milvus server."""
    if request.param == "server":
        uri = request.getfixturevalue("milvus_server")
        return "server", lambda name: (uri, name)
    path = tmp_path_factory.mktemp("milvus")
    return "lite", lambda name: (str(path / f"{name}.db"), name)


@pytest.fixture(scope="module")
def milvus_ix(where):
    uri, coll = where[1]("t64")
    db, q = data(64, n=600)
    ix = make_index("milvus", 64, uri=uri, collection=coll, overwrite=True)
    ids = np.arange(600) * 5 + 1
    ix.add(db, ids)
    yield ix, db, q, ids
    ix.close()


def test_search_matches_brute_force(milvus_ix):
    """BIN_FLAT equals brute force, ties included (in insertion order)."""
    ix, db, q, ids = milvus_ix
    for k in (1, 10, 75, 300):  # 75 cuts through the block of 71 duplicates
        d, i = ix.search(q, k)
        bd, bi = brute_knn(db, q, k)
        np.testing.assert_array_equal(d, bd)
        np.testing.assert_array_equal(i, ids[bi])


def test_range_search_matches_brute_force(milvus_ix):
    ix, db, q, ids = milvus_ix
    dist = hamming_pm1(q[:6], db).astype(np.int64)
    lims, D, I = ix.range_search(q[:6], 26)
    for j in range(6):
        rows = np.flatnonzero(dist[j] <= 26)
        rows = rows[np.argsort(dist[j, rows], kind="stable")]
        np.testing.assert_array_equal(I[lims[j]:lims[j + 1]], ids[rows])
        np.testing.assert_array_equal(D[lims[j]:lims[j + 1]], dist[j, rows])


def test_remove_save_load_and_rollback(where, tmp_path):
    db, q = data(32, n=200)
    uri, coll = where[1]("t32")
    ix = make_index("milvus", 32, uri=uri, collection=coll, overwrite=True)
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
        make_index("milvus", 32, uri=uri, collection=coll)
    back.close()


def test_server_ivf_returns_exact_distances_and_measured_recall(milvus_server):
    """BIN_IVF_FLAT on the server: the distances it returns are the true ones, and with every list
    probed its recall is 1. (On a collection this small Milvus scans its unindexed growing segment
    exhaustively, so fewer probes may find everything too; the benchmark measures IVF at scale.)"""
    from cmhash.index.ivf import recall_at_k
    from test_ivf import clustered

    db, q = clustered(4000, 8, seed=21, centres=200, flip=0.15)
    true = np.sort(hamming_pm1(unpack_codes(q), unpack_codes(db)).astype(np.int64), 1)[:, :30]
    recalls = {}
    for nprobe in (1, 16):
        ix = make_index("milvus", 64, uri=milvus_server, collection=f"ivf{nprobe}", index_type="BIN_IVF_FLAT",
                        nlist=16, nprobe=nprobe, overwrite=True)
        ix.add(db)
        d, ids = ix.search(q, 30)
        got = hamming_pm1(unpack_codes(q), unpack_codes(db)).astype(np.int64)
        np.testing.assert_array_equal(d, np.take_along_axis(got, ids, 1))  # ids are rows here
        recalls[nprobe] = recall_at_k(true, d).mean()
        ix.close()
    assert recalls[16] == 1.0 and 0 < recalls[1] <= 1.0


def test_store_on_a_server_end_to_end(milvus_server, tmp_path):
    """`cmhash index build --backend milvus --param uri=...` against the server, then add and search."""
    import json

    from click.testing import CliRunner

    from cmhash.cli import main
    from conftest import write_codes_folder

    a = write_codes_folder(tmp_path / "a", 300, seed=1)
    b = write_codes_folder(tmp_path / "b", 100, id_start=300, seed=2)
    r = CliRunner().invoke(main, ["index", "build", str(a), "--out", str(tmp_path / "ix"), "--backend", "milvus",
                                  "--param", f"uri={milvus_server}", "--param", "collection_prefix=e2e"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["index", "add", str(tmp_path / "ix"), str(b)])
    assert r.exit_code == 0, r.output
    from cmhash.index.store import IndexStore

    st = IndexStore.open(tmp_path / "ix")
    assert st.ntotal == 400 and st.indexes["image"].uri == milvus_server
    q = np.load(b / "text.npy")[:3]
    hits = st.search(q, 5, target="image", source="text")
    ref = make_index("flat", 64)
    ref.add(np.concatenate([np.load(a / "image.npy"), np.load(b / "image.npy")]))
    d, ids = ref.search(q, 5)
    assert [[h["id"] for h in row] for row in hits] == ids.tolist()
    assert [[h["distance"] for h in row] for row in hits] == d.tolist()
    st.close()
    r = CliRunner().invoke(main, ["index", "info", str(tmp_path / "ix"), "--json"])
    assert json.loads(r.output)["items"] == 400
