"""Metrics against brute-force loops and the community's formulas (DJSRH metric.py)."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmhash.eval import (evaluate_retrieval, graded_relevance, hamming_packed, hamming_pm1, map_at_k,
                         mean_average_precision, ndcg_at_k, pack_codes, pr_curve, precision_at_k, unpack_codes)
from cmhash.eval.runner import evaluate_codes, markdown_table
from cmhash.utils import CmhashError


def brute_ranking(q, db):
    """Sort by (Hamming distance, database index) with Python's sort."""
    d = [int(np.sum(q != b)) for b in db]
    return sorted(range(len(db)), key=lambda i: (d[i], i)), d


def brute_ap(q, db, ql, dl, k=None):
    order, _ = brute_ranking(q, db)
    if k is not None:
        order = order[:k]
    hits, total = 0, 0.0
    for rank, i in enumerate(order, 1):
        if np.dot(ql, dl[i]) > 0:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def community_map(qB, rB, qL, rL, topk=None):
    """calculate_map / calculate_top_map as written in DJSRH's metric.py (stable argsort)."""
    num_query, total = qL.shape[0], 0.0
    for it in range(num_query):
        gnd = (np.dot(qL[it], rL.T) > 0).astype(np.float32)
        hamm = 0.5 * (rB.shape[1] - np.dot(qB[it], rB.T))
        gnd = gnd[np.argsort(hamm, kind="stable")]
        if topk is not None:
            gnd = gnd[:topk]
        tsum = int(np.sum(gnd))
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(gnd == 1)) + 1.0
        total += np.mean(count / tindex)
    return total / num_query


codes_strategy = st.tuples(st.integers(1, 6), st.integers(1, 30), st.integers(1, 12), st.integers(1, 4),
                           st.integers(0, 10_000))


def _random_case(nq, ndb, k, c, seed):
    rng = np.random.default_rng(seed)
    q = rng.choice([-1, 1], (nq, k)).astype(np.int8)
    db = rng.choice([-1, 1], (ndb, k)).astype(np.int8)
    ql = (rng.random((nq, c)) < 0.4).astype(np.uint8)
    dl = (rng.random((ndb, c)) < 0.4).astype(np.uint8)
    return q, db, ql, dl


@settings(max_examples=60, deadline=None)
@given(codes_strategy, st.integers(1, 40))
def test_map_matches_brute_force_and_community(case, topk):
    q, db, ql, dl = _random_case(*case)
    r = evaluate_retrieval(q, db, ql, dl, topk=topk)
    brute_full = np.mean([brute_ap(q[i], db, ql[i], dl) for i in range(len(q))])
    brute_k = np.mean([brute_ap(q[i], db, ql[i], dl, topk) for i in range(len(q))])
    assert r["map"] == pytest.approx(brute_full, abs=1e-12)
    assert r[f"map@{topk}"] == pytest.approx(brute_k, abs=1e-12)
    assert r["map"] == pytest.approx(community_map(q, db, ql, dl), abs=1e-12)
    assert r[f"map@{topk}"] == pytest.approx(community_map(q, db, ql, dl, topk), abs=1e-12)


def test_hand_checked_ranking():
    # query 0000; db distances 1, 0, 1, 2 -> order 1, 0, 2, 3; relevant: 0 and 3
    q = np.array([[1, 1, 1, 1]])
    db = np.array([[-1, 1, 1, 1], [1, 1, 1, 1], [1, -1, 1, 1], [-1, -1, 1, 1]])
    ql, dl = np.array([[1, 0]]), np.array([[1, 0], [0, 1], [0, 1], [1, 1]])
    # ranks of relevant items: 2 (item 0) and 4 (item 3): AP = (1/2 + 2/4) / 2 = 0.5
    assert mean_average_precision(q, db, ql, dl) == pytest.approx(0.5)
    # top 2: only item 0 at rank 2 -> AP@2 = (1/2) / 1
    assert map_at_k(q, db, ql, dl, 2) == pytest.approx(0.5)
    # top 1: no relevant item -> 0, and the query still counts
    assert map_at_k(q, db, ql, dl, 1) == 0.0


def test_all_ties_and_no_relevant():
    q = np.ones((2, 8), np.int8)
    db = np.ones((5, 8), np.int8)  # every item at distance 0: order = database index
    ql = np.array([[1, 0], [0, 0]])  # second query has no relevant item
    dl = np.array([[0, 1], [1, 0], [0, 1], [1, 0], [0, 1]])
    # query 0: relevant at ranks 2 and 4 -> (1/2 + 2/4) / 2 = 0.5; query 1 adds 0
    assert mean_average_precision(q, db, ql, dl) == pytest.approx(0.25)
    # tie-averaged: 2 relevant among 5 tied items -> expected AP over all orders
    exp = np.mean([brute_tie_perm(p, [0, 1, 0, 1, 0]) for p in itertools.permutations(range(5))])
    assert mean_average_precision(q, db, ql, dl, ties="average") == pytest.approx(exp / 2)


def brute_tie_perm(perm, rel):
    hits, total = 0, 0.0
    for rank, i in enumerate(perm, 1):
        if rel[i]:
            hits += 1
            total += hits / rank
    return total / max(hits, 1)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 7), st.integers(1, 4), st.integers(0, 1000))
def test_tie_averaged_matches_enumeration(ndb, k, seed):
    rng = np.random.default_rng(seed)
    q = rng.choice([-1, 1], (1, k))
    db = rng.choice([-1, 1], (ndb, k))
    rel = rng.random(ndb) < 0.5
    ql, dl = np.array([[1]]), rel[:, None].astype(np.uint8)
    d = (db != q).sum(1)
    groups = [np.flatnonzero(d == v) for v in sorted(set(d))]
    aps = [brute_tie_perm(list(itertools.chain(*combo)), rel)
           for combo in itertools.product(*[list(itertools.permutations(g)) for g in groups])]
    assert mean_average_precision(q, db, ql, dl, ties="average") == pytest.approx(np.mean(aps), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(codes_strategy)
def test_pr_curve_and_precision_at_k_brute_force(case):
    q, db, ql, dl = _random_case(*case)
    k = q.shape[1]
    p, r = pr_curve(q, db, ql, dl)
    ps, pc, rs, rc = np.zeros(k + 1), np.zeros(k + 1), np.zeros(k + 1), 0
    for i in range(len(q)):
        rel = (dl @ ql[i]) > 0
        if rel.sum() == 0:
            continue
        d = (db != q[i]).sum(1)
        rc += 1
        for rad in range(k + 1):
            ret = d <= rad
            if ret.sum():
                ps[rad] += (rel & ret).sum() / ret.sum()
                pc[rad] += 1
            rs[rad] += (rel & ret).sum() / rel.sum()
    np.testing.assert_allclose(p, ps / np.maximum(pc, 1), atol=1e-12)
    np.testing.assert_allclose(r, rs / max(rc, 1), atol=1e-12)
    ks = sorted({1, min(3, len(db)), len(db)})
    got = precision_at_k(q, db, ql, dl, ks)
    for kk in set(ks):
        want = np.mean([np.mean([(dl[j] @ ql[i]) > 0 for j in brute_ranking(q[i], db)[0][:kk]]) for i in range(len(q))])
        assert got[kk] == pytest.approx(want, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from([8, 16, 24, 64, 128]), st.integers(0, 999))
def test_packed_hamming_matches_pm1(nq, ndb, k, seed):
    rng = np.random.default_rng(seed)
    q, db = rng.choice([-1, 1], (nq, k)), rng.choice([-1, 1], (ndb, k))
    brute = np.array([[int((a != b).sum()) for b in db] for a in q])
    np.testing.assert_array_equal(hamming_pm1(q, db), brute)
    np.testing.assert_array_equal(hamming_packed(pack_codes(q), pack_codes(db)), brute)
    np.testing.assert_array_equal(unpack_codes(pack_codes(q), k), q)


def test_pack_layout_is_faiss_little_endian():
    code = -np.ones((1, 16), np.int8)
    code[0, 0] = 1  # bit 0 -> byte 0, value 1
    code[0, 9] = 1  # bit 9 -> byte 1, value 2
    np.testing.assert_array_equal(pack_codes(code), [[1, 2]])


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(CmhashError, match="NaN"):
        mean_average_precision(np.array([[np.nan, 1.0]]), np.ones((2, 2)), np.ones((1, 1)), np.ones((2, 1)))
    with pytest.raises(CmhashError, match="bits"):
        mean_average_precision(np.ones((1, 4)), np.ones((2, 8)), np.ones((1, 1)), np.ones((2, 1)))
    with pytest.raises(CmhashError, match="multiple of 8"):
        pack_codes(np.ones((1, 12)))
    with pytest.raises(CmhashError, match="length"):
        mean_average_precision(np.ones((1, 4)), np.ones((2, 4)), np.ones((3, 1)), np.ones((2, 1)))


def test_runner_both_directions_and_table():
    q, db, ql, dl = _random_case(5, 40, 16, 3, 1)
    codes = {"q_img": q, "q_txt": -q, "db_img": db, "db_txt": db}
    m = evaluate_codes(codes, ql, dl)
    assert m["i2t"]["map"] == pytest.approx(mean_average_precision(q, db, ql, dl))
    assert m["t2i"]["map"] == pytest.approx(mean_average_precision(-q, db, ql, dl))
    assert len(m["curves"]["i2t"]["precision"]) == 17
    table = markdown_table([{"name": "X", "bits": 16, **m}])
    assert "| X |" in table and "I→T 16" in table


def brute_grade(a, b, kind):
    inter = sum(int(x) * int(y) for x, y in zip(a, b))
    if kind == "shared":
        return float(inter)
    if kind == "binary":
        return float(inter > 0)
    if kind == "jaccard":
        union = sum(1 for x, y in zip(a, b) if x or y)
        return inter / union if union else 0.0
    na, nb = np.sqrt(sum(int(x) ** 2 for x in a)), np.sqrt(sum(int(y) ** 2 for y in b))
    return inter / (na * nb) if na and nb else 0.0


def brute_ndcg(q, db, ql, dl, k, kind):
    order, _ = brute_ranking(q, db)
    gains = [2.0 ** brute_grade(ql, dl[i], kind) - 1 for i in range(len(db))]
    dcg = sum(gains[i] / np.log2(r + 1) for r, i in enumerate(order[:k], 1))
    ideal = sorted(gains, reverse=True)[:k]
    idcg = sum(g / np.log2(r + 1) for r, g in enumerate(ideal, 1))
    return dcg / idcg if idcg > 0 else 0.0


@settings(max_examples=60, deadline=None)
@given(codes_strategy, st.integers(1, 40), st.sampled_from(["shared", "jaccard", "cosine", "binary"]))
def test_ndcg_matches_brute_force(case, k, kind):
    q, db, ql, dl = _random_case(*case)
    want = np.mean([brute_ndcg(q[i], db, ql[i], dl, k, kind) for i in range(len(q))])
    assert ndcg_at_k(q, db, ql, dl, k, kind) == pytest.approx(want, abs=1e-9)
    g = graded_relevance(ql, dl, kind)
    assert g[0, 0] == pytest.approx(brute_grade(ql[0], dl[0], kind))


def test_ndcg_hand_checked():
    # query labels {a, b}; database: {a, b} (2 shared), {a} (1), {c} (0); codes rank them 2, 0, 1
    q = np.array([[1, 1, 1, 1]])
    db = np.array([[1, 1, -1, -1], [1, 1, 1, 1], [1, 1, 1, -1]])  # distances 2, 0, 1
    ql = np.array([[1, 1, 0]])
    dl = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1]])
    # ranking: item 1 (gain 1), item 2 (gain 0), item 0 (gain 3); ideal: 3, 1, 0
    dcg = 1 / np.log2(2) + 0 + 3 / np.log2(4)
    idcg = 3 / np.log2(2) + 1 / np.log2(3)
    assert ndcg_at_k(q, db, ql, dl, 3) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(q, db, ql, dl, 1) == pytest.approx(1 / 3)
    # a perfect ranking scores 1; a query with no related item scores 0 and still counts
    assert ndcg_at_k(np.array([[1, 1, -1, -1]]), db, ql, dl, 3) == pytest.approx(
        (3 + 0 / np.log2(3) + 1 / np.log2(4)) / idcg)
    assert ndcg_at_k(q, db, np.array([[0, 0, 0]]), dl, 3) == 0.0
    with pytest.raises(CmhashError, match="grade"):
        ndcg_at_k(q, db, ql, dl, 3, "overlapish")


def test_runner_reports_ndcg():
    q, db, ql, dl = _random_case(4, 20, 8, 3, 1)
    out = evaluate_codes({"q_img": q, "q_txt": q, "db_img": db, "db_txt": db}, ql, dl, curves=False)
    assert out["i2t"]["ndcg@50"] == pytest.approx(ndcg_at_k(q, db, ql, dl, 50))


@pytest.mark.parametrize("k,c", [(8, 3), (64, 24), (72, 70), (128, 130)])
def test_counting_kernel_equals_sorted_ranking(monkeypatch, k, c):
    """The counting-sort kernel (mAP, mAP@k, tie-averaged mAP, PR) gives the argsort path's numbers:
    heavy ties (few distinct codes), label sets over one 64-bit word, queries with nothing relevant,
    k past the database."""
    from cmhash import kernels

    if kernels.kernel_name() != "c":
        pytest.skip("the compiled kernels are not built")
    rng = np.random.default_rng(k + c)
    base = rng.choice([-1, 1], (7, k)).astype(np.int8)
    db = base[rng.integers(0, 7, 300)]
    db[::5] = rng.choice([-1, 1], (60, k))
    q = rng.choice([-1, 1], (23, k)).astype(np.int8)
    ql, dl = (rng.random((23, c)) < 0.05).astype(np.uint8), (rng.random((300, c)) < 0.05).astype(np.uint8)
    ql[0] = 0  # no relevant item
    for topk in (1, 50, 400):
        fast = evaluate_retrieval(q, db, ql, dl, topk=topk, tie_averaged=True)
        pr_fast = pr_curve(q, db, ql, dl)
        with monkeypatch.context() as m:
            m.setattr(kernels, "kernel_name", lambda: "numpy")
            slow = evaluate_retrieval(q, db, ql, dl, topk=topk, tie_averaged=True)
            pr_slow = pr_curve(q, db, ql, dl)
        assert fast.keys() == slow.keys()
        for key in fast:
            assert fast[key] == pytest.approx(slow[key], abs=1e-12), key
        np.testing.assert_allclose(pr_fast, pr_slow, atol=1e-12)
    assert fast["map"] == pytest.approx(np.mean([brute_ap(q[i], db, ql[i], dl) for i in range(len(q))]), abs=1e-12)
