"""DSPRH's network pieces against their equations: iSQRT-COV (Newton-Schulz against an
eigendecomposition), strip pooling, the twin bottleneck, fusion, ResNet-34's keys."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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
