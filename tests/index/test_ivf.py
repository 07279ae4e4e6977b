"""The approximate inverted-file backend: exact distances for what it returns, recall computed right,
its lists saved and read back, and a store that picks exact or approximate per query direction."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from cmhash import kernels
from cmhash.index import HashIndexError, load_index, make_index
from cmhash.index.ivf import calibrate, recall_at_k, train_quantizer
from cmhash.index.store import IndexStore

pytestmark = pytest.mark.skipif(kernels.kernel_name() != "c", reason="the compiled kernels are not built")


def clustered(n, nbytes, seed=0, centres=40, flip=0.08):
    """Codes around a few centres (as learned codes cluster), and queries near them."""
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 2, (centres, nbytes * 8)).astype(bool)

    def draw(m):
        bits = c[rng.integers(0, centres, m)] ^ (rng.random((m, nbytes * 8)) < flip)
        return np.packbits(bits, axis=1, bitorder="little")

    return draw(n), draw(60)


@pytest.mark.parametrize("nbytes", [4, 8, 16, 32])
def test_returned_distances_are_exact_and_ordered(nbytes):
    db, q = clustered(3001, nbytes, seed=nbytes)
    ix = make_index("ivf", nbytes * 8, nlist=32, nprobe=3)
    ix.add(db, ids=np.arange(len(db)) * 7 + 5)
    d, ids = ix.search(q, 25)
    assert d.shape == (60, 25) and (ids >= 0).all()
    rows = (ids - 5) // 7
    true = kernels.dists(db, q).astype(np.int64)  # brute force, (nq, n)
    np.testing.assert_array_equal(d, np.take_along_axis(true, rows, 1))  # true Hamming distances
    for j in range(len(q)):  # ordered by (distance, row), no repeats
        assert len(set(rows[j])) == 25
        assert list(zip(d[j], rows[j])) == sorted(zip(d[j], rows[j]))


def test_every_list_probed_gives_the_exact_distances():
    db, q = clustered(2000, 8, seed=3)
    ix = make_index("ivf", 64, nlist=16)
    ix.add(db)
    exact_d, _ = ix.search(q, 40, exact=True)
    d, _ = ix.search(q, 40, nprobe=16)
    np.testing.assert_array_equal(d, exact_d)
    assert recall_at_k(exact_d, d).min() == 1.0 and recall_at_k(exact_d, d, strict=True).min() == 1.0


def test_recall_at_k_by_hand():
    exact = np.array([[1, 2, 2, 3], [0, 0, 5, 5], [4, -1, -1, -1]])
    approx = np.array([[1, 2, 3, 3], [0, 5, 5, 6], [4, -1, -1, -1]])
    # ann-benchmarks: returned codes within the exact k-th distance (3, 5, 4)
    np.testing.assert_allclose(recall_at_k(exact, approx), [4 / 4, 3 / 4, 1.0])
    # strict: distances matched as multisets ({1,2,3} of {1,2,2,3}; {0,5,5} of {0,0,5,5})
    np.testing.assert_allclose(recall_at_k(exact, approx, strict=True), [3 / 4, 3 / 4, 1.0])


def test_recall_against_brute_force_and_grows_with_nprobe():
    db, q = clustered(4000, 8, seed=5, centres=200, flip=0.15)
    ix = make_index("ivf", 64, nlist=64)
    ix.add(db)
    true = np.sort(kernels.dists(db, q).astype(np.int64), 1)[:, :50]  # brute-force exact distances
    recalls = []
    for npr in (1, 4, 16, 64):
        d, _ = ix.search(q, 50, nprobe=npr)
        kth = true[:, -1:]
        by_hand = ((d >= 0) & (d <= kth)).sum(1) / 50  # -1: a slot left empty (too few codes probed)
        np.testing.assert_allclose(recall_at_k(true, d), by_hand)
        recalls.append(recall_at_k(true, d).mean())
    assert recalls == sorted(recalls) and recalls[-1] == 1.0 and recalls[0] < 1.0
    cal = calibrate(ix, q, k=50, target=0.9)
    assert cal["recall"] >= 0.9 and cal["nprobe"] <= 64


def test_lists_are_saved_with_the_codes(tmp_path):
    db, q = clustered(2500, 8, seed=7)
    ix = make_index("ivf", 64, nlist=32, nprobe=4)
    ix.add(db)
    ix.prepare()
    before = ix.search(q, 20)
    ix.save(tmp_path / "a.cmhidx")
    back = load_index(tmp_path / "a.cmhidx")
    assert back.n_lists == 32 and back._lists is not None  # read back as laid out, not trained or grouped again
    mapped = load_index(tmp_path / "a.cmhidx", mmap=True)
    assert isinstance(mapped._lists[0], np.memmap)
    for got in (back, mapped):
        for a, b in zip(before, got.search(q, 20)):
            np.testing.assert_array_equal(a, b)
    bad = make_index("ivf", 64, nlist=32, nprobe=4)  # list bounds that do not fit the codes: refused
    bad.add(db)
    bad.prepare()
    bad._lists[2][5] = 10 ** 6
    bad.save(tmp_path / "c.cmhidx")
    with pytest.raises(HashIndexError, match="list bounds"):
        load_index(tmp_path / "c.cmhidx")
    raw = bytearray((tmp_path / "a.cmhidx").read_bytes())
    (tmp_path / "b.cmhidx").write_bytes(bytes(raw[:-3]))
    with pytest.raises(HashIndexError, match="truncated"):
        load_index(tmp_path / "b.cmhidx")


def test_add_and_remove_after_the_lists_exist():
    db, q = clustered(3000, 8, seed=9)
    ix = make_index("ivf", 64, nlist=16, nprobe=16)
    ix.add(db[:2000])
    ix.search(q, 10)  # lists built
    ix.add(db[2000:])  # assigned to the trained cells
    assert ix.remove(np.arange(0, 3000, 3)) == 1000
    d, ids = ix.search(q, 30)
    exact_d, exact_ids = ix.search(q, 30, exact=True)
    np.testing.assert_array_equal(d, exact_d)  # every list probed: the exact distances
    assert not np.isin(ids, np.arange(0, 3000, 3)).any()


def test_quantizer_is_deterministic_and_bad_parameters_are_clear():
    db, _ = clustered(5000, 8, seed=11)
    np.testing.assert_array_equal(train_quantizer(db, 64, seed=1), train_quantizer(db, 64, seed=1))
    for bad in ({"nlist": 0}, {"nprobe": 0}, {"target_recall": 1.5}, {"approx_from": -1}):
        with pytest.raises(HashIndexError, match="ivf backend"):
            make_index("ivf", 64, **bad)


def paired_store(path, n=3000, approx_from=1000):
    """A store of n items whose text code is its image code with 10% of bits flipped."""
    rng = np.random.default_rng(0)
    img, _ = clustered(n, 8, seed=13, centres=100)
    flip = rng.random((n, 64)) < 0.1
    txt = np.packbits(np.unpackbits(img, axis=1, bitorder="little") ^ flip, axis=1, bitorder="little")
    st = IndexStore.create(path, 64, "ivf", backend_params={"approx_from": approx_from}, commit=False)
    st.add(img, txt, [{"caption": f"item {i}"} for i in range(n)])
    return st, img, txt


def test_store_picks_exact_or_approximate_per_direction(tmp_path):
    st, img, txt = paired_store(tmp_path / "ix")
    plan = st.manifest["search"]
    assert plan["text->text"] == {"mode": "exact"} and plan["image->image"] == {"mode": "exact"}
    for key in ("text->image", "image->text"):
        assert plan[key]["mode"] == "approx" and plan[key]["recall"] >= 0.95
    st.close()
    st = IndexStore.open(tmp_path / "ix")  # the plan and the lists come back from disk
    assert st.search_mode("text", "image")["nprobe"] == plan["text->image"]["nprobe"]
    assert st.search_mode(None, "image") == {"mode": "exact"}
    exact = st.search(txt[:5], 10, target="image")
    approx = st.search(txt[:5], 10, target="image", source="text")
    for j, (e, a) in enumerate(zip(exact, approx)):
        true = kernels.dists(img[[h["id"] for h in a]], txt[[j]])[0]  # item ids are their rows here
        assert [h["distance"] for h in a] == true.tolist()  # exact distances for what it returns
        assert all(x >= y for x, y in zip((h["distance"] for h in a), (h["distance"] for h in e)))  # never nearer
    est = st.estimate_recall(100)
    assert set(est) == {"text->image", "image->text"} and all(r["recall"] >= 0.9 for r in est.values())
    st.close()


def test_same_modal_approximate_when_asked(tmp_path):
    img, _ = clustered(3000, 8, seed=13, centres=100)
    st = IndexStore.create(tmp_path / "ix", 64, "ivf", commit=False,
                           backend_params={"approx_from": 1000, "approx_same_modal": True})
    st.add(img, img, [{"caption": f"item {i}"} for i in range(3000)])
    assert all(p["mode"] == "approx" and p["recall"] >= 0.95 for p in st.manifest["search"].values())
    st.close()


def test_small_store_stays_exact_and_info_says_so(tmp_path):
    from cmhash.cli import main

    st, _, _ = paired_store(tmp_path / "ix", n=500, approx_from=100_000)
    assert all(p == {"mode": "exact"} for p in st.manifest["search"].values())
    st.close()
    st, _, _ = paired_store(tmp_path / "ix2", n=3000, approx_from=1000)
    st.close()
    res = CliRunner().invoke(main, ["index", "info", str(tmp_path / "ix2"), "--json", "--recall", "50"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["search"]["text->image"].startswith("approx (nprobe") and info["search"]["text->text"] == "exact"
    assert "recall@50" in info["recall_now"]["text->image"]

