"""Each supervised loss against a hand-written loop over a few items (pytorch-metric-learning style)."""
import math

import numpy as np
import pytest
import torch

from cmhash.losses import (attention_calibration_loss, attention_preservation_loss, consistency_loss, dcmh_loss,
                           decomposition_loss, discriminator_loss, distribution_consistency_loss, generator_loss,
                           informativeness_loss, label_similarity, mmd2, multilevel_similarity_loss,
                           pairwise_likelihood_loss, ssah_net_loss)


def t(x):
    return torch.tensor(x, dtype=torch.float64)


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def nll_loop(a, b, s):
    tot = 0.0
    for i in range(len(a)):
        for j in range(len(b)):
            th = 0.5 * sum(a[i][k] * b[j][k] for k in range(len(a[i])))
            tot += math.log(1 + math.exp(th)) - s[i][j] * th
    return tot


L3 = [[1, 0, 1], [0, 1, 0], [1, 1, 0]]


def test_label_similarity_hand_checked():
    lab = t(L3)
    assert label_similarity(lab, lab).tolist() == [[1, 0, 1], [0, 1, 1], [1, 1, 1]]
    cos = label_similarity(lab, lab, "cosine")
    assert cos[0, 2].item() == pytest.approx(1 / 2)  # one shared of sqrt(2) x sqrt(2)
    assert cos[1, 2].item() == pytest.approx(1 / math.sqrt(2))
    assert cos[0, 1].item() == 0 and cos[0, 0].item() == pytest.approx(1)
    with pytest.raises(ValueError):
        label_similarity(lab, lab, "jaccardish")


def test_rectangular_likelihood_matches_loop():
    a = [[0.5, -1.0], [2.0, 0.3]]
    b = [[1.0, 1.0], [-0.4, 0.2], [0.0, -2.0]]
    s = [[1, 0, 1], [0, 0, 1]]
    got = pairwise_likelihood_loss(t(a), t(b), t(s)).item()
    assert got == pytest.approx(nll_loop(a, b, s) / 6)


def test_dcmh_loss_matches_equation():
    cur = [[0.5, -1.0, 0.2], [1.5, 0.1, -0.3]]  # batch of 2 = training rows 0 and 2
    g = [[1.0, 0.0, -1.0], [0.3, 0.3, 0.3], [-1.0, 2.0, 0.5], [0.1, -0.2, 0.4]]  # other memory, N = 4
    f_mem = [[9, 9, 9], [0.2, -0.1, 0.0], [9, 9, 9], [-0.3, 0.5, 1.0]]  # rows 0, 2 stale (replaced by cur)
    labels_b = [[1, 0], [0, 1]]
    labels_n = [[1, 0], [1, 1], [0, 1], [0, 0]]
    s = [[1.0 if sum(x * y for x, y in zip(p, q)) > 0 else 0.0 for q in labels_n] for p in labels_b]
    bcodes = [[1, -1, 1], [1, 1, -1]]
    gamma, eta = 0.5, 2.0
    rest = [f_mem[1][k] + f_mem[3][k] for k in range(3)]
    quant = sum((bcodes[i][k] - cur[i][k]) ** 2 for i in range(2) for k in range(3))
    bal = sum((cur[0][k] + cur[1][k] + rest[k]) ** 2 for k in range(3))
    want = (nll_loop(cur, g, s) + gamma * quant + eta * bal) / (2 * 4)
    loss, parts = dcmh_loss(t(cur), t(g), t(s), t(bcodes), t(rest), gamma, eta)
    assert loss.item() == pytest.approx(want)
    assert parts["balance"] == pytest.approx(bal / 8)


def test_ssah_net_loss_matches_equation():
    h = [[0.5, -0.9], [-0.2, 0.7]]
    f = [[1.0, 0.0, 2.0], [0.5, 0.5, 0.0]]
    lp, lab = [[0.9, 0.2], [0.1, 0.6]], [[1, 0], [0, 1]]
    h_mem = [[1, -1], [-1, 1], [0.3, 0.3]]
    f_mem = [[0.0, 1.0, 1.0], [2.0, 0.0, 0.0], [0.1, 0.1, 0.1]]
    s = [[1, 0, 1], [0, 1, 1]]
    a, g, b, e = 0.3, 0.7, 1.5, 2.0
    quant = sum((math.copysign(1, x) - x) ** 2 for row in h for x in row) / 4
    label = sum((p - q) ** 2 for r1, r2 in zip(lp, lab) for p, q in zip(r1, r2)) / 4
    want = a * nll_loop(f, f_mem, s) / 6 + g * nll_loop(h, h_mem, s) / 6 + b * quant + e * label
    loss, _ = ssah_net_loss(t(h), t(f), t(lp), t(lab), t(h_mem), t(f_mem), t(s), a, g, b, e)
    assert loss.item() == pytest.approx(want)


def test_adversarial_losses_match_cross_entropy():
    real, fake = [0.5, -1.0], [2.0, 0.1]
    want = (sum(-math.log(sig(x)) for x in real) / 2 + sum(-math.log(1 - sig(x)) for x in fake) / 2) / 2
    assert discriminator_loss([t(real)], [t(fake)]).item() == pytest.approx(want)
    assert generator_loss(t(fake)).item() == pytest.approx(sum(-math.log(sig(x)) for x in fake) / 2)


def test_attention_terms_match_loops():
    s_att = [[0.8, 0.1], [0.3, 0.6]]
    target = [[1, 0], [1, 1]]
    k, b = 4.0, -1.5
    bce = sum(-(target[i][j] * math.log(sig(k * s_att[i][j] + b))
                + (1 - target[i][j]) * math.log(1 - sig(k * s_att[i][j] + b))) for i in range(2) for j in range(2)) / 4
    assert attention_calibration_loss(t(s_att), t(target), t(k), t(b)).item() == pytest.approx(bce)
    hi, ht = [[0.5, -0.5], [0.9, 0.1]], [[1.0, 0.2], [-0.3, 0.8]]
    p = [[sig(k * s_att[i][j] + b) for j in range(2)] for i in range(2)]
    got = attention_preservation_loss(t(hi), t(ht), t(s_att), t(k), t(b)).item()
    assert got == pytest.approx(nll_loop(hi, ht, p) / 4)


def cos(u, v):
    return sum(x * y for x, y in zip(u, v)) / math.sqrt(sum(x * x for x in u) * sum(y * y for y in v))


def test_multilevel_similarity_matches_loop():
    codes = [[[0.5, -0.5, 0.2], [0.1, 0.9, -0.4]], [[1.0, 0.0, 0.3], [-0.2, 0.4, 0.4]]]
    graded = [[1.0, 0.5], [0.5, 1.0]]
    terms = []
    for a in range(2):
        for b in range(a, 2):
            terms.append(sum((cos(codes[a][i], codes[b][j]) - (2 * graded[i][j] - 1)) ** 2
                             for i in range(2) for j in range(2)) / 4)
    got = multilevel_similarity_loss([t(c) for c in codes], t(graded)).item()
    assert got == pytest.approx(sum(terms) / len(terms))


def test_informativeness_matches_loop():
    codes = [[[0.5, -0.5], [0.1, 0.9]], [[0.3, 0.3], [-0.8, 0.2]]]
    logits = [[[1.0, -1.0, 0.0], [0.5, 0.5, 2.0]], [[0.0, 0.0, 0.0], [-1.0, 1.0, 0.2]]]
    lab = [[1, 0, 0], [0, 1, 1]]
    w = 0.4
    terms = []
    for c, z in zip(codes, logits):
        bce = sum(-(lab[i][j] * math.log(sig(z[i][j])) + (1 - lab[i][j]) * math.log(1 - sig(z[i][j])))
                  for i in range(2) for j in range(3)) / 6
        bal = sum(((c[0][k] + c[1][k]) / 2) ** 2 for k in range(2)) / 2
        terms.append(bce + w * bal)
    got = informativeness_loss([t(c) for c in codes], [t(z) for z in logits], t(lab), w).item()
    assert got == pytest.approx(sum(terms) / 2)


def test_consistency_matches_loop():
    codes = [[[0.5, -0.5]], [[-0.2, -0.1]], [[0.9, 0.3]]]
    b = [1, -1]  # signs of the sums 1.2, -0.3
    want = sum((c[0][k] - b[k]) ** 2 for c in codes for k in range(2)) / 2 / 3
    assert consistency_loss([t(c) for c in codes]).item() == pytest.approx(want)


def test_mmd_matches_loop_and_vanishes_on_equal_samples():
    x = [[0.0, 1.0], [1.0, 0.0]]
    y = [[0.6, 0.8], [-1.0, 0.0], [0.0, -1.0]]
    bw = (0.5, 1.0)

    def k(u, v):
        d2 = sum((a - b) ** 2 for a, b in zip(u, v))
        return sum(math.exp(-d2 / (2 * s * s)) for s in bw)

    def mean_k(p, q):
        return sum(k(u, v) for u in p for v in q) / (len(p) * len(q))

    want = mean_k(x, x) + mean_k(y, y) - 2 * mean_k(x, y)
    assert mmd2(t(x), t(y), bw).item() == pytest.approx(want)
    assert mmd2(t(x), t(x), bw).item() == pytest.approx(0.0, abs=1e-12)
    z = torch.randn(6, 4, dtype=torch.float64)
    assert distribution_consistency_loss(z, z, z).item() == pytest.approx(0.0, abs=1e-9)


def test_decomposition_matches_loop():
    s, p = [[1.0, 0.0], [0.5, 0.5]], [[0.0, 2.0], [1.0, 0.0]]
    rec, f = [[0.1, 0.2, 0.3], [0.0, 0.0, 1.0]], [[0.0, 0.2, 0.5], [0.5, 0.0, 1.0]]
    sem = [[1.0, 0.5], [0.0, 0.5]]
    w = 0.5
    align = sum((a - b) ** 2 for r1, r2 in zip(s, sem) for a, b in zip(r1, r2)) / 4
    recon = sum((a - b) ** 2 for r1, r2 in zip(rec, f) for a, b in zip(r1, r2)) / 6
    sn = [[x / math.sqrt(sum(y * y for y in r)) for x in r] for r in s]
    pn = [[x / math.sqrt(sum(y * y for y in r)) for x in r] for r in p]
    orth = sum(sum(sn[b][i] * pn[b][j] for b in range(2)) ** 2 for i in range(2) for j in range(2)) / 4
    loss, parts = decomposition_loss(t(s), t(p), t(rec), t(f), t(sem), w)
    assert loss.item() == pytest.approx(align + recon + w * orth)
    assert parts["orth"] == pytest.approx(orth)


def test_losses_reach_their_minimum_where_the_equations_say():
    lab = t([[1, 0], [0, 1]])
    graded = label_similarity(lab, lab, "cosine")  # identity: same item 1, other -1 in cosine
    perfect = t([[1.0, 1.0], [-1.0, -1.0]])
    assert multilevel_similarity_loss([perfect, perfect], graded).item() == pytest.approx(0.0, abs=1e-12)
    assert consistency_loss([perfect, perfect]).item() == pytest.approx(0.0)
    np.testing.assert_allclose(label_similarity(lab, lab).numpy(), np.eye(2))
