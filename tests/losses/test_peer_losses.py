"""JDSH, DGCPN and UCCH losses against their equations, written as loops over a few items."""
import math

import numpy as np
import pytest
import torch

from cmhash.losses import (contrastive_hashing_loss, cross_modal_ranking_loss, dgcpn_loss, dgcpn_similarity,
                           dsdw_stats, jdsh_loss, jdsh_similarity)


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def normed(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mse(a, b):
    return float(np.mean([(a[i][j] - b[i][j]) ** 2 for i in range(len(a)) for j in range(len(a[0]))]))


def test_jdsh_similarity_matches_loop():
    rng = np.random.default_rng(0)
    f, t = rng.random((5, 6)), rng.random((5, 4))
    n = len(f)
    si = np.array([[2 * cos(f[i], f[j]) - 1 for j in range(n)] for i in range(n)])
    st = np.array([[2 * cos(t[i], t[j]) - 1 for j in range(n)] for i in range(n)])
    sh = np.array([[cos(si[i], st[j]) for j in range(n)] for i in range(n)])  # rows normalised, dotted
    s = 0.5 * si + 0.1 * st + 0.4 * (sh + sh.T) / 2
    stats = {"loc": 0.3, "scale_left": 0.05, "scale_right": 0.02, "s_min": -0.2, "s_max": 0.9}
    left, right = 0.3 - 2 * 0.05, 0.3 + 4 * 0.02
    want = np.empty_like(s)
    for i in range(n):
        for j in range(n):
            v = s[i, j]
            if v < left:
                v = (1 + 0.1 * math.exp(-(v + 0.2))) * v
            elif v > right:
                v = (1 + 0.2 * math.exp(v - 0.9)) * v
            want[i, j] = 1.4 * v
    got = jdsh_similarity(torch.tensor(f), torch.tensor(t), stats=stats)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_dsdw_stats_hand_checked():
    s = torch.tensor([[9.0, 1.0, 2.0], [3.0, 9.0, 4.0], [5.0, 6.0, 9.0]])  # off-diagonal 1..6
    st = dsdw_stats(s)
    assert st["loc"] == 3.0  # torch's median of an even count: the lower middle
    assert st["scale_left"] == pytest.approx(1.5)  # 3-1, 3-2
    assert st["scale_right"] == pytest.approx(2.0)  # 4-3, 5-3, 6-3
    assert (st["s_min"], st["s_max"]) == (1.0, 6.0)  # the diagonal is left out


def test_jdsh_loss_matches_loop():
    rng = np.random.default_rng(1)
    ci, ct = np.tanh(rng.normal(size=(4, 6))), np.tanh(rng.normal(size=(4, 6)))
    s = rng.uniform(-1.4, 1.4, (4, 4))
    bi, bt = normed(ci), normed(ct)
    want = (0.1 * mse(bi @ bi.T, s) + mse(bi @ bt.T, s) + mse(bt @ bi.T, s)
            - np.mean([bi[i] @ bt[i] for i in range(4)]) + 0.1 * mse(bt @ bt.T, s))
    got, _ = jdsh_loss(torch.tensor(ci), torch.tensor(ct), torch.tensor(s), 0.1)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_dgcpn_similarity_matches_loop():
    rng = np.random.default_rng(2)
    n, k = 8, 3  # knn 3/8 of the items: each row keeps its 3 largest, less itself
    f, t = rng.random((n, 5)), rng.random((n, 4))
    pair = np.array([[0.01 * cos(t[i], t[j]) + 0.99 * cos(f[i], f[j]) for j in range(n)] for i in range(n)])
    p = np.zeros_like(pair)
    for i in range(n):
        top = np.argsort(pair[i])[::-1][:k]
        for j in top[1:]:  # the largest is the item itself
            p[i, j] = pair[i, j]
        p[i] /= p[i].sum()
    g = np.array([[sum(p[i, m] * p[j, m] for m in range(n)) for j in range(n)] for i in range(n)]) * 2.0 * k
    want = 2 * (0.7 * pair + 0.3 * g) - 1
    got = dgcpn_similarity(torch.tensor(f), torch.tensor(t), knn=k / n, a1=0.01, a2=0.3, scale_per_neighbour=2.0)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_dgcpn_loss_matches_loop():
    rng = np.random.default_rng(3)
    ci, ct = np.tanh(rng.normal(size=(4, 6))), np.tanh(rng.normal(size=(4, 6)))
    s = rng.uniform(-1, 1, (4, 4))
    bi, bt = normed(ci), normed(ct)
    ii, tt, it = bi @ bi.T, bt @ bt.T, bi @ bt.T
    off = 1 - np.eye(4)
    pair = np.mean([(it[i, i] - 1.5) ** 2 for i in range(4)])
    dis = mse(tt * off, s * off) + mse(it * off, s * off) + mse(ii * off, s * off)
    cons = mse(it, ii) + mse(it, tt) + mse(ii, tt) + mse(it, it.T)
    got, _ = dgcpn_loss(torch.tensor(ci), torch.tensor(ct), torch.tensor(s), 1.5, 1.0, 1.0)
    assert got.item() == pytest.approx(pair + dis + cons, rel=1e-6)


def test_contrastive_hashing_loss_matches_loop():
    rng = np.random.default_rng(4)
    b, k, neg = 3, 8, 5
    hi, ht = normed(rng.normal(size=(b, k))), normed(rng.normal(size=(b, k)))
    keys = np.sign(rng.normal(size=(b, 1 + neg, k)))
    t = 0.9
    want = 0.0
    for h in (hi, ht):
        for i in range(b):
            logits = [h[i] @ keys[i, j] / (t * math.sqrt(k)) for j in range(1 + neg)]
            want -= (logits[0] - math.log(sum(math.exp(v) for v in logits))) / b
    got, _ = contrastive_hashing_loss(torch.tensor(hi), torch.tensor(ht), torch.tensor(keys), t)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_cross_modal_ranking_loss_matches_loop():
    rng = np.random.default_rng(5)
    b, margin, shift, kappa = 4, 0.2, 1.0, 0.5
    hi, ht = normed(rng.normal(size=(b, 6))), normed(rng.normal(size=(b, 6)))
    want = 0.0
    for m in (hi @ ht.T, ht @ hi.T):  # M^xy, M^yx
        for i in range(b):
            s = [m[i, j] if m[i, i] - m[i, j] <= margin else m[i, j] - shift for j in range(b)]
            want += (margin + kappa * math.log(sum(math.exp(v / kappa) for v in s)) - s[i]) / b
    got, _ = cross_modal_ranking_loss(torch.tensor(hi), torch.tensor(ht), margin, shift, kappa)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_ranking_loss_lowers_scores_outside_the_margin_only():
    hi = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # perfectly separated pairs: the off-diagonal cosine 0 is 1 below the diagonal 1 (> m): shifted
    got, _ = cross_modal_ranking_loss(hi, hi, margin=0.2, shift=1.0, kappa=1.0)
    want = 0.2 + math.log(math.e + math.exp(-1.0)) - 1.0
    assert got.item() == pytest.approx(2 * want, rel=1e-6)
