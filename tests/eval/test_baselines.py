"""The shallow baselines: CCA-ITQ, CCA-RR and real-valued CCA on planted data, ITQ's objective,
the K > r case, and that the validation choice never reads the queries."""
from types import SimpleNamespace

import numpy as np
import pytest

from cmhash.codes import sign
from cmhash.eval.baselines import cca_baselines, cca_metrics, random_codes_metrics
from cmhash.models.cca import CCA, CCAHash, itq_rotation
from cmhash.eval.metrics import cosine_retrieval


def planted(n=700, classes=6, shared=5, seed=0, noise_x=100, noise_y=80):
    """Two views that share a ``shared``-d class subspace, each buried in many louder noise dimensions."""
    rng = np.random.default_rng(seed)
    lab = np.eye(classes)[rng.integers(0, classes, n)]
    z = lab @ rng.standard_normal((classes, shared))  # (n, shared)
    x = np.concatenate([z @ rng.standard_normal((shared, 30)) + 0.3 * rng.standard_normal((n, 30)),
                        3 * rng.standard_normal((n, noise_x))], 1)
    y = np.concatenate([z @ rng.standard_normal((shared, 20)) + 0.3 * rng.standard_normal((n, 20)),
                        3 * rng.standard_normal((n, noise_y))], 1)
    q = np.arange(150)
    split = SimpleNamespace(train=np.arange(150, n), query=q, database=np.arange(150, n))
    return SimpleNamespace(split=split, feat=x, data=SimpleNamespace(texts=y, labels=lab))


def test_cca_itq_recovers_a_planted_shared_subspace_where_random_codes_do_not():
    inputs = planted()
    itq = cca_metrics(inputs, 16, "itq")
    rr = cca_metrics(inputs, 16, "random")
    real = cca_metrics(inputs, 16, "real")
    rand = random_codes_metrics(inputs, 16, curves=False)
    for m in (itq, real):
        assert m["i2t"]["map"] > 0.95 and m["t2i"]["map"] > 0.95
    assert rr["i2t"]["map"] > 0.9
    assert rand["i2t"]["map"] < 0.3 and rand["t2i"]["map"] < 0.3
    assert itq["selected"]["directions"] == 16 and itq["selected"]["r"] == 100  # r = min(D, d) = min(130, 100)


def test_directions_kept_are_min_of_bits_and_r():
    inputs = planted(noise_x=10, noise_y=0)  # d = 20: r = 20
    m = cca_metrics(inputs, 64, "itq")
    assert m["selected"]["r"] == 20 and m["selected"]["directions"] == 20
    assert m["i2t"]["map"] > 0.9  # the 44 extra random hyperplanes in the same space do not spoil it


def test_itq_lowers_the_quantisation_loss_of_a_random_rotation():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((500, 8)) * np.linspace(3, 0.5, 8)  # (N, c) unequal variances
    r0, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    r = itq_rotation(v, iterations=50)
    np.testing.assert_allclose(r @ r.T, np.eye(8), atol=1e-8)  # orthogonal

    def q_loss(rot):
        p = v @ rot
        return float(((sign(p) - p) ** 2).sum())

    assert q_loss(r) < 0.97 * q_loss(r0)


def test_cca_directions_are_ordered_by_correlation_and_whitened():
    inputs = planted()
    x, y = inputs.feat[inputs.split.train], inputs.data.texts[inputs.split.train]
    cca = CCA(1e-3).fit(x, y)
    assert np.all(np.diff(cca.corr) <= 1e-12) and cca.corr[0] > 0.9
    px, py = cca.project_x(x, 5), cca.project_y(y, 5)
    np.testing.assert_allclose(np.cov(px.T, bias=True), np.eye(5), atol=0.05)  # unit variance, uncorrelated
    got = [np.corrcoef(px[:, j], py[:, j])[0, 1] for j in range(5)]
    np.testing.assert_allclose(got, cca.corr[:5], atol=0.02)


def test_the_validation_choice_never_reads_the_queries():
    inputs = planted(seed=3)

    def chosen(inp):
        return {k: m["selected"] for k, m in cca_baselines(inp, [8, 16]).items()}

    before = chosen(inputs)
    assert set(before) == {("itq", 8), ("itq", 16), ("random", 8), ("random", 16), ("real", 8), ("real", 16)}
    q = inputs.split.query
    inputs.feat[q] = np.random.default_rng(9).standard_normal(inputs.feat[q].shape)
    inputs.data.texts[q] = 0.0
    inputs.data.labels[q] = np.roll(inputs.data.labels[q], 1, axis=1)
    assert chosen(inputs) == before


def test_cca_hash_rejects_an_unknown_rotation():
    with pytest.raises(ValueError, match="rotation"):
        CCAHash(16, rotation="spin")


def test_cosine_retrieval_matches_brute_force():
    rng = np.random.default_rng(2)
    q, db = rng.standard_normal((7, 5)), rng.standard_normal((30, 5))
    ql, dl = np.eye(3)[rng.integers(0, 3, 7)], np.eye(3)[rng.integers(0, 3, 30)]
    got = cosine_retrieval(q, db, ql, dl, topk=10, ndcg_k=None)
    aps, apks = [], []
    for i in range(7):
        sims = [q[i] @ db[j] / np.linalg.norm(q[i]) / np.linalg.norm(db[j]) for j in range(30)]
        order = sorted(range(30), key=lambda j: (-sims[j], j))
        rel = [float(ql[i] @ dl[j] > 0) for j in order]
        hits, ap = 0, []
        for r, v in enumerate(rel, 1):
            if v:
                hits += 1
                ap.append(hits / r)
        aps.append(np.mean(ap) if ap else 0.0)
        top = [a for a, r in zip(ap, [r for r, v in enumerate(rel, 1) if v]) if r <= 10]
        apks.append(np.mean(top) if top else 0.0)
    assert got["map"] == pytest.approx(np.mean(aps))
    assert got["map@10"] == pytest.approx(np.mean(apks))
