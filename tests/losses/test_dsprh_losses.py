"""DSPRH's three losses, each against a hand-written loop on a few items: alignment, the
cosine triplet (and its negatives), the pairwise likelihood."""
import math

import pytest
import torch
import torch.nn.functional as F

from cmhash.losses import (alignment_loss, bidirectional_cosine_triplet, cosine_triplet_loss, dsah_similarity,
                           pairwise_likelihood_loss, pairwise_targets, select_negatives)


def _items(n=4, k=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, k, generator=g).tanh(), torch.randn(n, k, generator=g).tanh(),
            torch.rand(n, d, generator=g), torch.rand(n, 3, generator=g))


def _cos(a, b):
    a, b = a.tolist(), b.tolist()
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a)) / math.sqrt(sum(y * y for y in b))


def test_alignment_loss_by_hand():
    ci, ct, fi, t = _items()
    s, s_i, s_t = dsah_similarity(fi, t, 1.5, 0.9)
    rec_i, rec_t = torch.rand(4, 3), torch.rand(4, 5)
    got, parts = alignment_loss(ci, ct, s, s_i, s_t, rec_i, t, rec_t, fi, 1.5, w_rec=0.7, w_intra=0.5,
                                w_inter=2.0, w_rank=0.3, nu=0.01, u=0.5, rank_form="mu")
    n = 4
    intra = inter = fh_i = fh_t = 0.0
    for i in range(n):
        for j in range(n):
            cii, ctt, cit = _cos(ci[i], ci[j]), _cos(ct[i], ct[j]), _cos(ci[i], ct[j])
            sij = s[i, j].item()
            intra += (cii - sij) ** 2 + (ctt - sij) ** 2
            inter += (cit - sij) ** 2
            fh_i += (cii - 1.5 * s_i[i, j].item()) ** 2
            fh_t += (ctt - 1.5 * s_t[i, j].item()) ** 2
    intra, inter, fh_i, fh_t = intra / n ** 2, inter / n ** 2, fh_i / n ** 2, fh_t / n ** 2
    rank = sum((_cos(ci[i], ct[i]) - 1.5) ** 2 for i in range(n)) / n

    def mse_norm(r, x):
        tot = 0.0
        for i in range(len(r)):
            nx = math.sqrt(sum(v * v for v in x[i].tolist()))
            tot += sum((a - b / nx) ** 2 for a, b in zip(r[i].tolist(), x[i].tolist()))
        return tot / r.numel()

    rec = mse_norm(rec_i, t) + mse_norm(rec_t, fi)
    want = 0.7 * rec + 0.5 * intra + 2.0 * inter + 0.3 * rank + 0.01 * (fh_i + 0.5 * fh_t)
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert parts["rank"] == pytest.approx(rank, rel=1e-5) and parts["rec"] == pytest.approx(rec, rel=1e-5)
    zero, _ = alignment_loss(ci, ct, s, s_i, s_t, None, None, None, None, 1.5, 0, 0, 0, 0, 0)
    assert zero.item() == 0.0


@pytest.mark.parametrize("form", ["softmax", "hinge", "unit", "mu"])
def test_diagonal_ranking_by_hand(form):
    from cmhash.losses import diagonal_ranking_loss

    ci, ct, _, _ = _items()
    c = F.normalize(ci, dim=1) @ F.normalize(ct, dim=1).T
    n, m = 4, 0.3
    cos = [[_cos(ci[i], ct[j]) for j in range(n)] for i in range(n)]
    if form == "softmax":  # cross-entropy of each row and each column at temperature 0.1
        def ce(i, scores):
            return -math.log(math.exp(scores[i] / 0.1) / sum(math.exp(v / 0.1) for v in scores))
        want = (sum(ce(i, cos[i]) for i in range(n)) / n + sum(ce(j, [cos[i][j] for i in range(n)])
                                                                for j in range(n)) / n) / 2
    elif form == "hinge":  # each matched pair against its row and its column
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
        rows = sum(max(0.0, m + cos[i][j] - cos[i][i]) for i, j in pairs) / len(pairs)
        cols = sum(max(0.0, m + cos[i][j] - cos[j][j]) for i, j in pairs) / len(pairs)
        want = (rows + cols) / 2
    else:
        target = 1.5 if form == "mu" else 1.0
        want = sum((cos[i][i] - target) ** 2 for i in range(n)) / n
    assert diagonal_ranking_loss(c, form, mu=1.5, margin=m, tau=0.1).item() == pytest.approx(want, rel=1e-5)
    same = torch.ones(3, 4) / 2  # a collapsed batch: every code the same
    collapsed = diagonal_ranking_loss(same @ same.T, "hinge", margin=m)
    assert collapsed.item() == pytest.approx(m)  # the hinge reading penalises collapse by the full margin
    assert diagonal_ranking_loss(same @ same.T, "softmax").item() == pytest.approx(math.log(3), rel=1e-5)


def test_cosine_triplet_by_hand():
    a, p, _, _ = _items(n=3, k=4)
    n_, _, _, _ = _items(n=3, k=4, seed=1)
    got = cosine_triplet_loss(a, p, n_, margin=0.4)
    want = sum(max(0.0, 0.4 + (1 - _cos(a[i], p[i])) - (1 - _cos(a[i], n_[i]))) for i in range(3)) / 3
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_negative_selection_by_brute_force():
    sim = torch.tensor([[1.0, 0.2, -0.5, 0.1, 0.0],
                        [0.2, 1.0, 0.3, -0.2, 0.9],
                        [-0.5, 0.3, 1.0, 0.4, -0.1],
                        [0.1, -0.2, 0.4, 1.0, 0.5],
                        [0.0, 0.9, -0.1, 0.5, 1.0]])
    code_cos = torch.tensor([[0.9, 0.1, 0.3, 0.8, 0.7],
                             [0.2, 0.9, 0.5, 0.4, 0.1],
                             [0.6, 0.2, 0.9, 0.1, 0.3],
                             [0.3, 0.2, 0.1, 0.9, 0.4],
                             [0.5, 0.7, 0.2, 0.1, 0.9]])
    least = select_negatives(sim, code_cos, "least")
    assert least.tolist() == [2, 3, 0, 1, 2]
    hard = select_negatives(sim, code_cos, "hard", quantile=0.5)
    for i in range(5):
        others = sorted((sim[i, j].item(), j) for j in range(5) if j != i)
        cands = [j for v, j in others if v <= others[1][0]]  # the least similar half (2 of 4)
        assert hard[i].item() == max(cands, key=lambda j: code_cos[i, j].item())
    rnd = select_negatives(sim, code_cos, "random", quantile=0.5, generator=torch.Generator().manual_seed(1))
    for i in range(5):
        others = sorted(sim[i, j].item() for j in range(5) if j != i)
        assert rnd[i].item() != i and sim[i, rnd[i]].item() <= others[1]
    with pytest.raises(ValueError):
        select_negatives(sim, code_cos, "nope")


def test_bidirectional_triplet_uses_both_directions():
    ci, ct, fi, t = _items(n=5)
    s, _, _ = dsah_similarity(fi, t, 1.0, 0.9)
    total, parts = bidirectional_cosine_triplet(ci, ct, s, margin=0.5, mode="least")
    ni = select_negatives(s, ci @ ct.T, "least")
    nt = select_negatives(s.T, ct @ ci.T, "least")
    want = cosine_triplet_loss(ci, ct, ct[ni], 0.5) + cosine_triplet_loss(ct, ci, ci[nt], 0.5)
    assert total.item() == pytest.approx(want.item(), rel=1e-6)
    assert set(parts) == {"ct_i2t", "ct_t2i"}


def test_pairwise_likelihood_by_hand():
    ci, ct, _, _ = _items(n=3, k=4)
    s = torch.tensor([[1.0, 0.3, 0.0], [0.5, 1.0, 1.0], [0.0, 0.2, 1.0]])
    got = pairwise_likelihood_loss(ci, ct, s)
    want = 0.0
    for i in range(3):
        for j in range(3):
            th = 0.5 * sum(a * b for a, b in zip(ci[i].tolist(), ct[j].tolist()))
            want += math.log(1 + math.exp(th)) - s[i, j].item() * th
    assert got.item() == pytest.approx(want / 9, rel=1e-6)


def test_pairwise_targets():
    s = torch.tensor([[1.0, 0.6, -0.2], [0.6, 1.0, 0.1], [-0.2, 0.1, 1.0]])
    soft = pairwise_targets(s, "soft")
    assert torch.allclose(soft, torch.tensor([[1.0, 0.8, 0.4], [0.8, 1.0, 0.55], [0.4, 0.55, 1.0]]))
    hard = pairwise_targets(s, "binary", 0.5)  # off-diagonal median 0.1: only 0.6 is above it
    assert hard.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]


# ---------------------------------------------------------------- ResNet-34 and the method
