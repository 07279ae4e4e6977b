"""Backbones (torchvision-compatible keys, offline weights) and hashing nets."""
import math

import pytest
import torch

from conftest import method_on_dims as build_method
from cmhash.models import ImgNet, TxtNet, build_backbone
from cmhash.models.backbones import AlexNet
from cmhash.utils import CmhashError

TORCHVISION_ALEXNET_KEYS = {
    "features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias", "features.6.weight",
    "features.6.bias", "features.8.weight", "features.8.bias", "features.10.weight", "features.10.bias",
    "classifier.1.weight", "classifier.1.bias", "classifier.4.weight", "classifier.4.bias",
}


def test_alexnet_keys_match_torchvision_and_weights_load(tmp_path):
    with pytest.warns(UserWarning, match="random initialisation"):
        net = AlexNet()
    assert set(net.state_dict()) == TORCHVISION_ALEXNET_KEYS
    sd = {k: torch.randn_like(v) for k, v in net.state_dict().items()}
    sd["classifier.6.weight"], sd["classifier.6.bias"] = torch.zeros(1000, 4096), torch.zeros(1000)
    torch.save(sd, tmp_path / "alexnet.pth")
    loaded = build_backbone("alexnet", str(tmp_path / "alexnet.pth"), image_size=64)
    assert torch.equal(loaded.state_dict()["features.0.weight"], sd["features.0.weight"])
    x = torch.randint(0, 255, (2, 3, 40, 50), dtype=torch.uint8)
    loaded.eval()
    assert loaded(loaded.preprocess(x)).shape == (2, 4096)
    assert loaded.feature_map(loaded.preprocess(x)).shape[:2] == (2, 256)
    torch.save({"features.0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(CmhashError, match="not torchvision AlexNet"):
        build_backbone("alexnet", str(tmp_path / "bad.pth"))
    (tmp_path / "trunc.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CmhashError, match="not a readable torch weight file"):
        build_backbone("alexnet", str(tmp_path / "trunc.pth"))


def test_efficientnet_lite0_pretrained_offline():
    net = build_backbone("efficientnet-lite0", image_size=64).eval()
    assert net.weights_id.startswith("imagenet")
    x = torch.randint(0, 255, (2, 3, 48, 48), dtype=torch.uint8)
    with torch.no_grad():
        f = net(net.preprocess(x))
    assert f.shape == (2, 1280) and torch.isfinite(f).all()


def test_nets_shapes_and_scaled_tanh():
    img, txt = ImgNet(10, 16, hidden=32), TxtNet(7, 16, hidden=32)
    assert img(torch.randn(4, 10)).shape == (4, 16) and txt(torch.randn(4, 7)).shape == (4, 16)
    img.act.set_epoch(3)
    assert img.act.alpha == pytest.approx(math.sqrt(4))
    assert isinstance(ImgNet(10, 8, hidden=0).encoder, torch.nn.Identity)


@pytest.mark.parametrize("name", ["djsrh", "dsah"])
def test_method_loss_backprops_to_both_nets(name):
    m = build_method(name, 8, 12, 6, {"img_hidden": 16, "txt_hidden": 16})
    batch = {"image": torch.randn(5, 12), "feat": torch.randn(5, 12), "text": torch.rand(5, 6)}
    loss, parts = m.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and parts
    assert m.img_net.fc_encode.weight.grad.abs().sum() > 0
    assert m.txt_net.fc2.weight.grad.abs().sum() > 0


def test_dsah_reconstruction_gradient_modes():
    batch = {"image": torch.randn(5, 12), "feat": torch.randn(5, 12), "text": torch.rand(5, 6)}
    for mode, reaches in (("none", False), ("ste", True)):
        m = build_method("dsah", 8, 12, 6, {"img_hidden": 16, "txt_hidden": 16, "recon_grad": mode,
                                            "w_diag": 0, "w_sym": 0, "w_intra": 0})
        # isolate the reconstruction term: zero out the alignment part by using a constant S
        code_i = m.img_net(batch["image"])
        recon = m.dec_img(m._binary(code_i))
        torch.nn.functional.mse_loss(recon, batch["text"]).backward()
        got = m.img_net.fc_encode.weight.grad
        assert (got is not None and got.abs().sum() > 0) == reaches
    with pytest.raises(CmhashError, match="recon_grad"):
        build_method("dsah", 8, 12, 6, {"recon_grad": "magic"})


def test_unknown_method_and_param():
    with pytest.raises(CmhashError, match="unknown method 'dsprhx'"):
        build_method("dsprhx", 8, 4, 4)
    with pytest.raises(CmhashError, match="unknown djsrh parameter"):
        build_method("djsrh", 8, 4, 4, {"betta": 0.5})
