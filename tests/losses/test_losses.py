"""Each loss against a hand-written loop on a few items."""
import math

import numpy as np
import pytest
import torch

from cmhash.losses import djsrh_loss, dsah_loss, dsah_similarity, feature_similarity, joint_semantics_matrix
from cmhash.models.nets import sign_ste


def loop_cos(x):
    n = len(x)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            a, b = x[i], x[j]
            out[i, j] = 2 * (a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)) - 1
    return out


def loop_mse(a, b):
    return float(np.mean([(a[i][j] - b[i][j]) ** 2 for i in range(len(a)) for j in range(len(a[0]))]))


def test_feature_similarity_hand_checked():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    s = feature_similarity(x)
    # cos: (1,0)-(0,1): 0 -> -1; (1,0)-(1,1)/sqrt2: 0.7071 -> 0.4142
    assert s[0, 1].item() == pytest.approx(-1.0)
    assert s[0, 2].item() == pytest.approx(2 / math.sqrt(2) - 1, abs=1e-6)
    assert s[2, 2].item() == pytest.approx(1.0, abs=1e-6)


def test_joint_semantics_matches_loop():
    rng = np.random.default_rng(0)
    f, t = rng.random((4, 5)), rng.random((4, 3))
    beta, eta, mu = 0.9, 0.4, 1.5
    si, st = loop_cos(f), loop_cos(t)
    s_tilde = beta * si + (1 - beta) * st
    m = 4
    want = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            second = sum(s_tilde[i, k] * s_tilde[j, k] for k in range(m)) / m
            want[i, j] = mu * ((1 - eta) * s_tilde[i, j] + eta * second)
    got = joint_semantics_matrix(torch.tensor(f), torch.tensor(t), beta, eta, mu)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    s, s_i, s_t = dsah_similarity(torch.tensor(f), torch.tensor(t), 1.5, 0.9)
    np.testing.assert_allclose(s.numpy(), 1.5 * (0.9 * si + 0.1 * st), atol=1e-5)


def normed(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_djsrh_loss_matches_loop():
    rng = np.random.default_rng(1)
    ci, ct = np.tanh(rng.normal(size=(3, 4))), np.tanh(rng.normal(size=(3, 4)))
    s = rng.uniform(-1.5, 1.5, (3, 3))
    bi, bt = normed(ci), normed(ct)
    ii = loop_mse(bi @ bi.T, s)
    it = loop_mse(bi @ bt.T, s)
    tt = loop_mse(bt @ bt.T, s)
    total, parts = djsrh_loss(torch.tensor(ci), torch.tensor(ct), torch.tensor(s), 0.1, 0.3)
    assert total.item() == pytest.approx(0.1 * ii + it + 0.3 * tt, rel=1e-6)
    assert parts["it"] == pytest.approx(it, rel=1e-6)


def test_djsrh_loss_zero_when_codes_reconstruct_s():
    b = torch.tensor([[1.0, 1, 1, 1], [1, 1, -1, -1], [-1, -1, 1, 1]])
    s = (torch.nn.functional.normalize(b) @ torch.nn.functional.normalize(b).T)
    total, _ = djsrh_loss(b, b, s)
    assert total.item() == pytest.approx(0.0, abs=1e-7)


def test_dsah_loss_matches_loop():
    rng = np.random.default_rng(2)
    n, k, d, dim = 4, 6, 5, 7
    ci, ct = np.tanh(rng.normal(size=(n, k))), np.tanh(rng.normal(size=(n, k)))
    f, t = rng.random((n, dim)), rng.random((n, d))
    si, st = loop_cos(f), loop_cos(t)
    s = 1.5 * (0.9 * si + 0.1 * st)
    ri, rt = rng.normal(size=(n, d)), rng.normal(size=(n, dim))
    bi, bt = normed(ci), normed(ct)
    bibt = bi @ bt.T
    want = (loop_mse(bt @ bt.T, s) + loop_mse(bibt, s) + loop_mse(bi @ bi.T, s)
            + np.mean([(bibt[i, i] - 1.5) ** 2 for i in range(n)])
            + loop_mse(ri, t) + loop_mse(rt, f) + 2 * loop_mse(bibt, bibt.T)
            + 0.1 * (loop_mse(bi @ bi.T, 1.5 * si) + loop_mse(bt @ bt.T, 1.5 * st)))
    T = torch.tensor
    got, parts = dsah_loss(T(ci), T(ct), T(s), T(si), T(st), T(ri), T(t), T(rt), T(f))
    assert got.item() == pytest.approx(want, rel=1e-6)
    assert set(parts) == {"align", "diag", "recon", "sym", "intra"}


def test_sign_ste_forward_sign_backward_identity():
    x = torch.tensor([-0.3, 0.0, 0.7], requires_grad=True)
    y = sign_ste(x)
    assert y.tolist() == [-1.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]
