"""DSPRH's pieces: iSQRT-COV, strip pooling, twin bottleneck, fusion, the three losses (each
against a hand-written loop on a few items), ResNet-34's keys, and the method end to end."""
import itertools
import json
import math

import numpy as np
import pytest

from cmhash.checkpoint import load_checkpoint
import torch
import torch.nn.functional as F

from cmhash.losses import (alignment_loss, bidirectional_cosine_triplet, cosine_triplet_loss, dsah_similarity,
                           pairwise_likelihood_loss, pairwise_targets, select_negatives)
from conftest import method_on_dims as build_method
from cmhash.models import (FusionImageFeatures, ISqrtCov, StripPooling, TwinBottleneck, covariance,
                           hamming_adjacency, newton_schulz_sqrt, triu_vec)
from cmhash.utils import CmhashError


# ---------------------------------------------------------------- iSQRT-COV
def _sqrtm_eigh(a: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(a)
    return v @ torch.diag_embed(w.clamp_min(0).sqrt()) @ v.transpose(-1, -2)


def test_covariance_matches_numpy():
    x = torch.randn(3, 5, 4, 6, dtype=torch.float64)
    got = covariance(x)
    for b in range(3):
        ref = np.cov(x[b].reshape(5, -1).numpy(), bias=True)
        np.testing.assert_allclose(got[b].numpy(), ref, atol=1e-12)


def test_newton_schulz_matches_eigendecomposition_sqrt():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 400, dtype=torch.float64)  # M >> C: well-conditioned covariances
    sigma = covariance(x)
    exact = _sqrtm_eigh(sigma)
    np.testing.assert_allclose(newton_schulz_sqrt(sigma, iters=30).numpy(), exact.numpy(), rtol=1e-8, atol=1e-10)
    five = newton_schulz_sqrt(sigma, iters=5)
    rel = (five - exact).norm() / exact.norm()
    assert rel < 0.05  # 5 iterations: an approximation, close on well-conditioned inputs
    assert (newton_schulz_sqrt(sigma, iters=10) - exact).norm() / exact.norm() < rel


def test_triu_vec_order_and_size():
    c = torch.arange(16.0).view(1, 4, 4)
    v = triu_vec(c)
    assert v.shape == (1, 10)
    assert v[0].tolist() == [0, 1, 2, 3, 5, 6, 7, 10, 11, 15]


def test_isqrt_cov_gradcheck_float64():
    torch.manual_seed(0)
    layer = ISqrtCov(4, reduce_dim=None, iters=3).double()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-5)


def test_isqrt_cov_output_and_reduction():
    layer = ISqrtCov(32, reduce_dim=8, iters=5)
    y = layer(torch.randn(5, 32, 4, 4))
    assert y.shape == (5, 36) and layer.out_dim == 36 and torch.isfinite(y).all()
    y.sum().backward()
    assert layer.reduce[0].weight.grad is not None
    with pytest.raises(ValueError):
        newton_schulz_sqrt(torch.eye(3)[None], iters=0)


# ---------------------------------------------------------------- strip pooling
def test_strip_pooling_shape_and_gate_by_hand():
    torch.manual_seed(0)
    sp = StripPooling(3).eval()
    x = torch.randn(2, 3, 5, 4)
    y = sp(x)
    assert y.shape == x.shape
    g = sp.gate(x)
    assert ((g > 0) & (g < 1)).all() and torch.allclose(y, x * g)
    # the gate by hand: strip averages, 3x1 / 1x3 convs (zero padded), BN (eval), broadcast sum
    col = x.mean(dim=3)  # (B, C, H)
    row = x.mean(dim=2)  # (B, C, W)
    wh, ww = sp.conv_h[0].weight[:, :, :, 0], sp.conv_w[0].weight[:, :, 0, :]  # (C, C, 3)
    bn_h, bn_w = sp.conv_h[1], sp.conv_w[1]
    yh = F.conv1d(col, wh, padding=1)
    yw = F.conv1d(row, ww, padding=1)
    yh = (yh - bn_h.running_mean[:, None]) / torch.sqrt(bn_h.running_var[:, None] + bn_h.eps) * bn_h.weight[:, None] \
        + bn_h.bias[:, None]
    yw = (yw - bn_w.running_mean[:, None]) / torch.sqrt(bn_w.running_var[:, None] + bn_w.eps) * bn_w.weight[:, None] \
        + bn_w.bias[:, None]
    s = torch.relu(yh[:, :, :, None] + yw[:, :, None, :])
    ref = torch.sigmoid(torch.einsum("oc,bchw->bohw", sp.fuse.weight[:, :, 0, 0], s) + sp.fuse.bias[None, :, None, None])
    assert torch.allclose(g, ref, atol=1e-6)


def test_strip_pooling_gating_identity():
    sp = StripPooling(4)
    with torch.no_grad():
        sp.fuse.weight.zero_()
        sp.fuse.bias.fill_(30.0)  # gate = sigmoid(30) = 1: the block is the identity
    x = torch.randn(2, 4, 3, 3)
    assert torch.allclose(sp(x), x, atol=1e-6)
    with torch.no_grad():
        sp.fuse.bias.zero_()  # gate = 1/2 everywhere
    assert torch.allclose(sp(x), x / 2, atol=1e-7)


# ---------------------------------------------------------------- twin bottleneck and fusion
def test_hamming_adjacency_is_tbh_formula():
    code = torch.tensor([[0.3, -0.2, 0.9, -0.1], [0.5, 0.5, 0.5, 0.5], [-0.1, -0.4, -0.2, -0.9]])
    a = hamming_adjacency(code, 1.4)
    b = torch.where(code >= 0, 1.0, -1.0)
    for i, j in itertools.product(range(3), repeat=2):
        ham = (b[i] != b[j]).sum().item()
        assert a[i, j].item() == pytest.approx((1 - ham / 4) ** 1.4, abs=1e-6)


def test_twin_bottleneck_trains_the_code_through_the_graph():
    torch.manual_seed(0)
    tb = TwinBottleneck(10, 8, 6, enc_dim=16, cont_dim=12, dec_dim=16)
    code, rec = tb(torch.randn(5, 10))
    assert code.shape == (5, 8) and rec.shape == (5, 6)
    rec.pow(2).sum().backward()  # reconstruction only: the code layer still gets a gradient (via A)
    assert tb.hash.weight.grad is not None and tb.hash.weight.grad.abs().sum() > 0
    plain = TwinBottleneck(10, 8, 6, enc_dim=0, graph=False)
    code, rec = plain(torch.randn(5, 10))
    rec.sum().backward()
    assert plain.hash.weight.grad is None  # no graph: reconstruction does not touch the code


def test_fusion_paths():
    f = FusionImageFeatures(0, 16, feat_dim=12, weights=(0.25, 0.25, 0.5), map_dim=8, cov_dim=4)
    out = f(torch.randn(3, 16, 4, 4))
    assert out.shape == (3, 12)
    out.sum().backward()
    assert f.strip.fuse.weight.grad is not None and f.cov2.reduce[0].weight.grad is not None
    # feature vectors (no conv map): the fusion degenerates to f3
    g = FusionImageFeatures(20, 0, feat_dim=12)
    x = torch.randn(3, 20)
    assert torch.allclose(g(x), g.f3(x)) and not g.use_map
    # w1 = w2 = 0 with a map: only the pooled branch, no map heads built
    h = FusionImageFeatures(0, 16, feat_dim=12, weights=(0, 0, 1))
    assert not hasattr(h, "cov1") and h(torch.randn(2, 16, 3, 3)).shape == (2, 12)


# ---------------------------------------------------------------- losses, by hand
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
def test_resnet34_torchvision_keys_and_weight_files(tmp_path):
    import warnings

    from cmhash.models.backbones import ResNet34

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = ResNet34()
    keys = set(net.state_dict())
    for k in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
              "layer2.0.downsample.1.running_mean", "layer3.5.bn2.weight", "layer4.2.conv2.weight"):
        assert k in keys
    assert len(keys) == 216  # torchvision's resnet34 has 218 entries, 2 of them fc.*
    sd = {k: v.clone() for k, v in net.state_dict().items()} | {"fc.weight": torch.zeros(1000, 512),
                                                                "fc.bias": torch.zeros(1000)}
    torch.save(sd, tmp_path / "r34.pth")
    loaded = ResNet34(str(tmp_path / "r34.pth")).eval()
    net.eval()
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(loaded.feature_map(x), net.feature_map(x)) and loaded.feature_map(x).shape == (1, 512, 2, 2)
    assert loaded(x).shape == (1, 512)
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(CmhashError, match="not torchvision ResNet-34 weights"):
        ResNet34(str(tmp_path / "bad.pth"))


def _dsprh(bits=8, img_dim=16, txt_dim=7, map_channels=16, **params):
    p = dict(feat_dim=24, map_dim=8, cov_dim=4, txt_hidden=20, enc_dim=16, cont_dim=8, dec_dim=16) | params
    return build_method("dsprh", bits, img_dim, txt_dim, p, map_channels=map_channels)


def test_dsprh_loss_reaches_every_part():
    torch.manual_seed(0)
    m = _dsprh()
    m.set_epoch(0)
    batch = {"image": torch.randn(6, 16, 4, 4).relu(), "feat": torch.rand(6, 16), "text": torch.rand(6, 7)}
    loss, parts = m.loss(batch)
    assert {"align", "triplet", "pairwise", "rec", "rank"} <= set(parts)
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
    assert m.encode_image(batch["image"]).shape == (6, 8) and m.encode_text(batch["text"]).shape == (6, 8)


@pytest.mark.parametrize("off,absent", [("alpha", "align"), ("beta", "triplet"), ("gamma", "pairwise")])
def test_dsprh_loss_terms_switch_off(off, absent):
    m = _dsprh(**{off: 0.0})
    batch = {"image": torch.randn(5, 16, 3, 3), "feat": torch.rand(5, 16), "text": torch.rand(5, 7)}
    _, parts = m.loss(batch)
    assert absent not in parts


def test_dsprh_on_feature_vectors_and_bad_settings():
    m = _dsprh(img_dim=12, map_channels=0)
    batch = {"image": torch.rand(4, 12), "feat": torch.rand(4, 12), "text": torch.rand(4, 7)}
    loss, _ = m.loss(batch)
    assert torch.isfinite(loss) and not m.img_feat.use_map
    with pytest.raises(CmhashError, match="fusion weights"):
        _dsprh(w1=0, w2=0, w3=0)
    with pytest.raises(CmhashError, match="negatives"):
        _dsprh(negatives="all")
    with pytest.raises(CmhashError, match="unknown dsprh parameter"):
        _dsprh(nope=1)


# ---------------------------------------------------------------- end to end: trainer, CLI, sweeps
def test_cli_train_dsprh_on_pixels_then_evaluate(tmp_path):
    """DSPRH on the embedded dataset: rendered images -> pretrained backbone conv maps (cached) ->
    fusion heads; then ``cmhash evaluate`` rebuilds the model from the checkpoint."""
    from click.testing import CliRunner

    from cmhash.cli import main

    out = tmp_path / "run"
    args = ["train", "-m", "dsprh", "-d", "synthetic", "-b", "8", "--epochs", "2", "-o", str(out),
            "--set", "data.options={n_items: 120, image_size: 32}", "--set", f"backbone.cache_dir={tmp_path / 'c'}",
            "--set", "backbone.image_size=64", "--set", "train.batch_size=16", "--set", "method.feat_dim=32",
            "--set", "method.map_dim=16", "--set", "method.cov_dim=4", "--set", "method.txt_hidden=32",
            "--set", "method.enc_dim=16"]
    r = CliRunner()
    res = r.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "| DSPRH |" in res.output and list((tmp_path / "c").glob("*-maps.npy"))
    ck = load_checkpoint(out / "bits-8" / "last.pt")
    assert ck["spec"]["image"]["map_channels"] == 1280 and ck["spec"]["image"]["mode"] == "maps"
    res = r.invoke(main, ["evaluate", str(out)])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "bits-8" / "metrics.json").read_text())
    assert f"{saved['i2t']['map']:.3f}" in res.output  # the same codes again


def test_dsprh_learns_on_feature_vectors(wiki_like, tmp_path):
    from cmhash.config import build_config
    from cmhash.train import run_experiment

    cfg = build_config("dsprh", "wiki", 16, {"train": {"epochs": 15, "eval_every": 5},
                                             "method": {"feat_dim": 64, "txt_hidden": 64, "enc_dim": 32,
                                                        "cont_dim": 16, "dec_dim": 32}},
                       {"data": {"root": str(wiki_like.parent)}})
    m = run_experiment(cfg, tmp_path / "run", progress=False)
    assert m["i2t"]["map"] > 0.45 and m["t2i"]["map"] > 0.45  # 4 balanced classes: random ~ 0.25


def test_sweep_spec_parsing_and_errors(tmp_path):
    from cmhash.train.sweep import builtin_specs, load_spec

    assert {"dsprh-loss-ablation", "dsprh-fusion", "dsprh-sensitivity", "compare-128"} <= set(builtin_specs())
    abl = load_spec("dsprh-loss-ablation")
    assert [p.name for p in abl.points] == ["full loss", "w/o alignment", "w/o cosine triplet", "w/o pairwise"]
    assert abl.points[1].overrides == {"method.alpha": 0} and abl.bits == [16, 32, 64, 128]
    fus = load_spec("dsprh-fusion")
    for p in fus.points:
        w1, w2, w3 = (p.overrides[f"method.w{i}"] for i in (1, 2, 3))
        assert w1 == w2 and w1 + w2 + w3 == pytest.approx(1.0)
    sens = load_spec("dsprh-sensitivity")
    assert {p.param for p in sens.points} == {"method.alpha", "method.beta", "method.gamma"}
    grid = load_spec({"method": "djsrh", "grid": {"method.beta": [0.3, 0.9], "method.eta": [0.1]}})
    assert len(grid.points) == 2 and grid.points[0].overrides == {"method.beta": 0.3, "method.eta": 0.1}
    cmp_ = load_spec("compare-128")
    assert [p.method for p in cmp_.points] == ["djsrh", "dsah", "dsprh"]
    for bad, msg in [({"variants": {"a": {}}, "grid": {"method.x": [1]}}, "exactly one"),
                     ({"variants": {"a": {"alpha": 1}}}, "must be one of data.X"),
                     ({"grid": {"method.x": []}}, "non-empty list"),
                     ({"bits": [0], "variants": {"a": {}}}, "positive integers"),
                     ({"variantz": {}}, "unknown sweep key")]:
        with pytest.raises(CmhashError, match=msg):
            load_spec(bad)
    with pytest.raises(CmhashError, match="no such sweep"):
        load_spec(str(tmp_path / "missing.yaml"))


def test_cli_sweep_runs_writes_table_and_plot_and_resumes(wiki_like, tmp_path):
    from click.testing import CliRunner

    from cmhash.cli import main

    spec = tmp_path / "s.yaml"
    spec.write_text("title: tiny\nmethod: djsrh\ndataset: wiki\nbits: [8]\ncurves: true\n"
                    "set: {method.img_hidden: 32, method.txt_hidden: 32, train.epochs: 2}\n"
                    "variants:\n  base: {}\n  dsah: {method: dsah, method.img_hidden: 32, method.txt_hidden: 32}\n")
    out = tmp_path / "sw"
    r = CliRunner()
    res = r.invoke(main, ["sweep", str(spec), "-o", str(out), "--data-root", str(wiki_like.parent)])
    assert res.exit_code == 0, res.output
    assert "| base |" in res.output and "| dsah |" in res.output
    assert (out / "sweep.png").stat().st_size > 1000 and (out / "curves-8bits.png").exists()
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["base", "dsah"]
    stamp = (out / "base" / "bits-8" / "metrics.json").stat().st_mtime_ns
    res = r.invoke(main, ["sweep", str(spec), "-o", str(out), "--data-root", str(wiki_like.parent), "--resume"])
    assert res.exit_code == 0 and (out / "base" / "bits-8" / "metrics.json").stat().st_mtime_ns == stamp
    res = r.invoke(main, ["sweep", "--list"])
    assert "dsprh-loss-ablation" in res.output
    res = r.invoke(main, ["sweep", "nope"])
    assert res.exit_code == 2 and "no such sweep" in res.output


@pytest.mark.parametrize("backbone", ["alexnet", "resnet34"])
def test_dsprh_finetunes_through_a_backbone(tmp_path, backbone):
    """Raw pixels -> backbone conv map (conv5 / layer4) + its pooled features (fc7 / GAP) -> fusion."""
    import warnings

    from cmhash.config import build_config
    from cmhash.data.inputs import input_spec, prepare_inputs
    from cmhash.train import train_run

    cfg = build_config("dsprh", "synthetic", 8,
                       {"train": {"epochs": 1, "batch_size": 8, "val_fraction": 0.0},
                        "backbone": {"name": backbone, "image_size": 64, "finetune": True,
                                     "cache_dir": str(tmp_path / "cache")},
                        "method": {"map_dim": 16, "cov_dim": 4, "txt_hidden": 16, "enc_dim": 16},
                        "data": {"options": {"n_items": 24, "image_size": 32}}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs = prepare_inputs(cfg)
        assert input_spec(cfg, inputs).image.mode == "pixels" and inputs.maps is None
        res = train_run(cfg, tmp_path / "ft", inputs, progress=False)
    net = res.model.img_feat
    assert net.backbone is not None and net.out_dim == net.backbone.out_dim
    first = net.backbone.features[0] if backbone == "alexnet" else net.backbone.conv1
    assert first.weight.grad is not None
    lrs = sorted(g["lr"] for g in res.model.make_optimizer().param_groups)
    assert lrs == [0.001, 0.01]  # backbone at DJSRH's image rate, heads at 0.01
