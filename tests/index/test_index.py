"""Every index backend against brute force, plus ids, errors and persistence."""
from pathlib import Path

import numpy as np
import pytest

from cmhash.eval.hamming import hamming_pm1, pack_codes, unpack_codes
from cmhash import kernels
from cmhash.utils import CmhashError
from cmhash.index import HashIndexError, as_packed, kernel_name, load_index, make_index
from cmhash.index.mih import default_m
from cmhash.registry import INDEX_BACKENDS

#: the exact backends that keep the index in their file (approximate ones: test_ivf.py; a database:
#: test_milvus.py), from the registry
LOCAL = [n for n in INDEX_BACKENDS.names()
         if not INDEX_BACKENDS.get(n).approximate and not INDEX_BACKENDS.get(n).store_files(Path("."))]


def brute_knn(db_pm1, q_pm1, k):
    """Reference: all distances, then (distance, insertion row) order; -1 past the database."""
    d = hamming_pm1(q_pm1, db_pm1).astype(np.int64)
    od = np.full((len(q_pm1), k), -1, np.int64)
    oi = np.full((len(q_pm1), k), -1, np.int64)
    for i in range(len(q_pm1)):
        o = np.lexsort((np.arange(len(db_pm1)), d[i]))[:k]
        od[i, :len(o)], oi[i, :len(o)] = d[i, o], o
    return od, oi


def data(bits, n=700, nq=25, seed=0, clustered=False):
    rng = np.random.default_rng(seed)
    if clustered:
        centres = rng.choice([-1, 1], size=(8, bits))
        db = centres[rng.integers(0, 8, n)] * np.where(rng.random((n, bits)) < 0.08, -1, 1)
    else:
        db = rng.choice([-1, 1], size=(n, bits))
    db[50:120] = db[7]  # a block of exact duplicates: ties at distance 0 and beyond
    q = np.concatenate([db[[7, 3]], rng.choice([-1, 1], size=(nq - 2, bits))])
    return db.astype(np.int8), q.astype(np.int8)


@pytest.mark.parametrize("backend", LOCAL)
@pytest.mark.parametrize("bits", [8, 16, 32, 64, 72, 128])
@pytest.mark.parametrize("clustered", [False, True])
def test_search_matches_brute_force(backend, bits, clustered):
    db, q = data(bits, clustered=clustered)
    ix = make_index(backend, bits)
    ids = np.arange(len(db)) * 3 + 11  # user ids differ from rows
    ix.add(db, ids)
    assert ix.ntotal == len(db)
    for k in (1, 5, 50, 90, len(db) + 7):
        d, i = ix.search(q, k)
        bd, bi = brute_knn(db, q, k)
        assert d.shape == (len(q), k) and i.shape == (len(q), k)
        np.testing.assert_array_equal(d, bd)
        np.testing.assert_array_equal(i, np.where(bi >= 0, ids[np.maximum(bi, 0)], -1))


@pytest.mark.parametrize("backend", LOCAL)
def test_range_search_matches_brute_force(backend):
    bits = 32
    db, q = data(bits, n=400)
    ix = make_index(backend, bits)
    ix.add(pack_codes(db))
    dist = hamming_pm1(q, db).astype(np.int64)
    for radius in (0, 3, 12, 32):
        lims, D, I = ix.range_search(q, radius)
        assert len(lims) == len(q) + 1
        for j in range(len(q)):
            rows = np.flatnonzero(dist[j] <= radius)
            rows = rows[np.argsort(dist[j, rows], kind="stable")]
            np.testing.assert_array_equal(I[lims[j]:lims[j + 1]], rows)
            np.testing.assert_array_equal(D[lims[j]:lims[j + 1]], dist[j, rows])


def cpu_paths():
    """The flat scan's paths this CPU has (CMHASH_KERNEL names), each a test case; the others skip."""
    level = kernels._C.cpu_level() if kernels._C is not None else 0
    return [pytest.param(name, marks=pytest.mark.skipif(level < lv, reason=f"this CPU has no {name}"))
            for name, lv in kernels.LEVELS.items()]


@pytest.mark.parametrize("path", cpu_paths())
@pytest.mark.parametrize("n", [600, 603])
@pytest.mark.parametrize("ties", [False, True])
def test_kernels_agree_with_numpy_reference(n, path, ties, monkeypatch):
    """Every scan path forced in turn (scalar, AVX2, AVX-512), every code width (the vector paths:
    4, 8, 16 and other multiples of 8 bytes; AVX2 pads widths up to 16 bytes), a database that is
    not a whole number of 8-, 32- or 64-row groups, query blocks left partly empty, and tie-heavy
    codes (bytes from {0, 1, 255}: a few distinct distances, where the row order decides)."""
    if kernels._C is None:
        pytest.skip("the compiled kernels are not built")
    monkeypatch.setenv("CMHASH_KERNEL", path)
    rng = np.random.default_rng(1)
    for nb in (1, 2, 3, 4, 5, 8, 9, 16, 17, 32):
        if ties:
            db = rng.choice(np.array([0, 1, 255], np.uint8), (n, nb))
            q = rng.choice(np.array([0, 1, 255], np.uint8), (37, nb))
        else:
            db = rng.integers(0, 256, (n, nb), dtype=np.uint8)
            db[30:90] = db[0]
            q = np.concatenate([db[:3], rng.integers(0, 256, (34, nb), dtype=np.uint8)])
        assert kernels.kernel_variant(nb) != "numpy fallback"
        for k in (1, 13, 64, 700):
            a, b = kernels.knn(db, q, k), kernels.knn_numpy(db, q, k)
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        ref = hamming_pm1(unpack_codes(q), unpack_codes(db))
        np.testing.assert_array_equal(kernels.dists(db, q), ref)
        off, length = 3, min(13, nb * 8 - 3)
        bits = np.unpackbits(db, axis=1, bitorder="little")[:, off:off + length].astype(np.int64)
        np.testing.assert_array_equal(kernels.substr_keys(db, off, length), (bits << np.arange(length)).sum(1))


def test_large_k_takes_the_bounded_path():
    """k in the tens of thousands: the numpy path (memory bounded), same answers."""
    rng = np.random.default_rng(2)
    db = rng.integers(0, 256, (40_000, 16), dtype=np.uint8)
    q = rng.integers(0, 256, (3, 16), dtype=np.uint8)
    d, i = kernels.knn(db, q, 50_000)
    assert d.shape == (3, 50_000) and (i[:, 40_000:] == -1).all()
    ref = kernels.dists(db, q).astype(np.int64)
    for j in range(3):
        np.testing.assert_array_equal(i[j, :40_000], np.lexsort((np.arange(40_000), ref[j])))


def test_kernel_is_compiled():
    """The install builds the C kernels (setup.py); the numpy fallback exists for compiler-less machines."""
    assert kernel_name() == "c"


def test_kernel_choice_is_named_and_checked(monkeypatch):
    """CMHASH_KERNEL forces a path by name; an unknown name, or one this CPU lacks, is a clear error;
    the variant named is the one the scan takes for that code width."""
    level = kernels._C.cpu_level()
    monkeypatch.setenv("CMHASH_KERNEL", "scalar")
    assert kernels.kernel_variant(8) in ("popcnt", "portable")
    monkeypatch.setenv("CMHASH_KERNEL", "sse9")
    with pytest.raises(CmhashError, match="expected one of scalar, avx2, avx512"):
        kernels.knn(np.zeros((4, 8), np.uint8), np.zeros((1, 8), np.uint8), 2)
    if level < 3:
        monkeypatch.setenv("CMHASH_KERNEL", "avx512")
        with pytest.raises(CmhashError, match="this CPU lacks it"):
            kernels.kernel_variant()
    if level >= 2:
        monkeypatch.setenv("CMHASH_KERNEL", "avx2")
        assert kernels.kernel_variant(8) == "avx2" and kernels.kernel_variant(16) == "avx2"
        assert kernels.kernel_variant(32) == "popcnt"  # wider than its byte distances hold
    monkeypatch.delenv("CMHASH_KERNEL")
    assert kernels.kernel_variant(8) == {3: "avx512-vpopcntdq", 2: "avx2", 1: "popcnt"}[level]


def test_threads_give_the_same_answer():
    db, q = data(64, n=2000, nq=100)
    packed = pack_codes(db)
    one = kernels.knn(packed, pack_codes(q), 20, threads=1)
    four = kernels.knn(packed, pack_codes(q), 20, threads=4)
    np.testing.assert_array_equal(one[1], four[1])


def test_mih_visits_few_codes_on_clustered_data():
    """Sublinear behaviour, counted (not timed): on clustered codes MIH verifies a fraction of the
    database; its answers still equal the exhaustive scan."""
    rng = np.random.default_rng(0)
    centres = rng.choice([-1, 1], size=(200, 64))
    src = rng.integers(0, 200, 20000)
    db = centres[src] * np.where(rng.random((20000, 64)) < 0.03, -1, 1)
    q = centres[rng.integers(0, 200, 50)] * np.where(rng.random((50, 64)) < 0.03, -1, 1)
    ix = make_index("mih", 64, budget=4.0)  # counted, whatever the scan it competes with costs here
    ix.add(db)
    d, i, visits = ix.search(q, 10, with_visits=True)
    bd, bi = brute_knn(db.astype(np.int8), q.astype(np.int8), 10)
    np.testing.assert_array_equal(d, bd)
    np.testing.assert_array_equal(i, bi)
    assert (visits >= 0).all() and visits.mean() < 0.05 * len(db)
    # a query over budget is scanned exhaustively instead: still exact, reported with visits -1
    tight = make_index("mih", 64, budget=0.0)
    tight.add(db)
    d2, i2, v2 = tight.search(q, 10, with_visits=True)
    assert (v2 == -1).all()
    np.testing.assert_array_equal(d2, bd)
    np.testing.assert_array_equal(i2, bi)
    assert default_m(64, 1_000_000) == 3 and default_m(64, 20_000) == 4 and default_m(128, 1_000_000) == 6


@pytest.mark.parametrize("backend", LOCAL)
def test_remove_keeps_order_and_ids(backend):
    db, q = data(64, n=300)
    ix = make_index(backend, 64)
    ix.add(db[:200], np.arange(200) + 1000)
    ix.add(db[200:])  # default ids continue after the largest
    assert ix.ids[200] == 1200
    gone = np.arange(1000, 1300, 3)
    assert ix.remove(np.concatenate([gone, [99999]])) == len(gone)
    keep = ~np.isin(np.arange(300) + 1000, gone)
    d, i = ix.search(q, 40)
    bd, bi = brute_knn(db[keep], q, 40)
    np.testing.assert_array_equal(d, bd)
    np.testing.assert_array_equal(i, (np.arange(300) + 1000)[keep][bi])
    np.testing.assert_array_equal(ix.reconstruct([1001, 1299]), pack_codes(db[[1, 299]]))
    with pytest.raises(HashIndexError, match="not in the index"):
        ix.reconstruct([1000])


@pytest.mark.parametrize("backend", LOCAL)
def test_bad_input_is_a_clear_error(backend):
    ix = make_index(backend, 32)
    with pytest.raises(HashIndexError, match="width"):
        ix.add(np.zeros((3, 5), np.uint8))
    with pytest.raises(HashIndexError, match="NaN"):
        ix.add(np.full((2, 32), np.nan))
    ix.add(np.ones((4, 32)), ids=[1, 2, 3, 4])
    with pytest.raises(HashIndexError, match="already in the index"):
        ix.add(np.ones((1, 32)), ids=[2])
    with pytest.raises(HashIndexError, match="repeat"):
        ix.add(np.ones((2, 32)), ids=[7, 7])
    with pytest.raises(HashIndexError, match=">= 0"):
        ix.add(np.ones((1, 32)), ids=[-3])
    with pytest.raises(HashIndexError, match="k must be"):
        ix.search(np.ones((1, 32)), 0)
    with pytest.raises(HashIndexError, match="radius"):
        ix.range_search(np.ones((1, 32)), -1)
    with pytest.raises(HashIndexError, match="multiple of 8"):
        make_index(backend, 12)
    empty = make_index(backend, 32)
    d, i = empty.search(np.ones((2, 32)), 3)
    assert (i == -1).all() and (d == -1).all()


def test_unknown_backend():
    with pytest.raises(HashIndexError, match="unknown index backend"):
        make_index("annoy", 64)


def test_as_packed_accepts_every_code_form():
    rng = np.random.default_rng(0)
    pm1 = rng.choice([-1, 1], size=(5, 24)).astype(np.int8)
    packed = pack_codes(pm1)
    for form in (pm1, pm1.astype(np.float32) * 0.3, (pm1 > 0).astype(np.uint8), pm1 > 0, packed):
        np.testing.assert_array_equal(as_packed(form, 24), packed)
    np.testing.assert_array_equal(as_packed(pm1[0], 24), packed[:1])


@pytest.mark.parametrize("backend", LOCAL)
def test_save_load_round_trip_and_damage(backend, tmp_path):
    db, q = data(128, n=500)
    ix = make_index(backend, 128)
    ix.add(db, np.arange(500) * 2)
    path = ix.save(tmp_path / "ix.cmhidx")
    back = load_index(path, bits=128)
    assert type(back) is type(ix) and back.ntotal == 500
    for a, b in zip(ix.search(q, 30), back.search(q, 30)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(HashIndexError, match="holds 128-bit codes, 64-bit"):
        load_index(path, bits=64)
    raw = path.read_bytes()
    (tmp_path / "short.cmhidx").write_bytes(raw[:-10])
    with pytest.raises(HashIndexError, match="truncated"):
        load_index(tmp_path / "short.cmhidx")
    flipped = bytearray(raw)
    flipped[-1] ^= 0xFF
    (tmp_path / "flip.cmhidx").write_bytes(bytes(flipped))
    with pytest.raises(HashIndexError, match="checksum"):
        load_index(tmp_path / "flip.cmhidx")
    (tmp_path / "junk.cmhidx").write_bytes(b"hello world, not an index")
    with pytest.raises(HashIndexError, match="bad magic"):
        load_index(tmp_path / "junk.cmhidx")
    (tmp_path / "cut.cmhidx").write_bytes(raw[:20])
    with pytest.raises(HashIndexError, match="truncated or corrupt"):
        load_index(tmp_path / "cut.cmhidx")
    with pytest.raises(HashIndexError, match="not found"):
        load_index(tmp_path / "none.cmhidx")


def test_save_is_atomic(tmp_path, monkeypatch):
    """A crash while writing (here: the rename never happens) leaves the previous file as it was
    and no temporary file behind."""
    import cmhash.utils as utils

    ix = make_index("flat", 64)
    ix.add(np.ones((10, 64)))
    path = ix.save(tmp_path / "ix.cmhidx")
    before = path.read_bytes()
    ix.add(-np.ones((5, 64)))

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(utils.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        ix.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_index(path).ntotal == 10
    assert [p.name for p in tmp_path.iterdir()] == ["ix.cmhidx"]


def test_backend_parameters_are_checked_by_name_and_type():
    """``--param`` values go through the typed parser: an unknown key or a wrong type names itself."""
    with pytest.raises(HashIndexError, match="mih backend parameter m: expected int"):
        make_index("mih", 64, m="abc")
    with pytest.raises(HashIndexError, match=r"unknown flat backend parameter\(s\) \['m'\]"):
        make_index("flat", 64, m=4)
    assert make_index("mih", 64, m=4, budget=1).budget == 1.0


def test_a_missing_kernel_is_announced_not_silent():
    """Without the compiled kernel (a source install with no C compiler), loading the kernels warns
    once and the variant says "numpy fallback"; the searches still answer (numpy)."""
    import subprocess
    import sys

    code = ("import sys, warnings; sys.modules['cmhash.kernels._kernels'] = None\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    import numpy as np, cmhash.kernels as k\n"
            "    import cmhash.kernels\n"
            "print(len(w), str(w[0].message) if w else '')\n"
            "print(k.kernel_name(), '|', k.kernel_variant())\n"
            "db = np.arange(64, dtype=np.uint8).reshape(8, 8)\n"
            "print(k.knn(db, db[:2], 3)[1].tolist())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith("1 cmhash: the compiled Hamming kernels are not built"), out
    assert out[1] == "numpy | numpy fallback"
    db = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert out[2] == str(kernels.knn(db, db[:2], 3)[1].tolist())  # the compiled kernel's answer here
