"""DSPRH as a method: every loss term reached and switched off, feature vectors, pixels through
the CLI, learning on features, fine-tuning through a backbone."""
import json

import pytest
import torch

from cmhash.checkpoint import load_checkpoint
from conftest import method_on_dims as build_method
from cmhash.utils import CmhashError


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
    assert lrs == [0.001, 0.005]  # backbone at DJSRH's image rate, heads at DSAH's 0.005


# the ablation path's first row: DSPRH's class configured as DSAH computes DSAH's loss
DSAH_FRAME = dict(w1=0.0, w2=0.0, w3=1.0, feat_dim=24, txt_hidden=20, enc_dim=0, recon="linear", align="dsah",
                  beta=0.0, gamma=0.0)


def test_dsprh_configured_as_dsah_is_dsah():
    torch.manual_seed(0)
    dsah = build_method("dsah", 8, 12, 7, {"img_hidden": 24, "txt_hidden": 20})
    frame = build_method("dsprh", 8, 12, 7, DSAH_FRAME)
    names = {"img_net.encoder.0": "img_feat.f3.0", "img_net.fc_encode": "img_tb.hash", "txt_net.fc1": "txt_feat.0",
             "txt_net.fc2": "txt_tb.hash", "dec_img": "dec_img", "dec_txt": "dec_txt"}
    theirs = dsah.state_dict()
    mapped = {f"{names[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}": v for k, v in theirs.items()}
    assert set(mapped) == set(frame.state_dict())  # the same parameters, no more
    frame.load_state_dict(mapped)
    for m in (dsah, frame):
        m.set_epoch(3)
    batch = {"image": torch.rand(6, 12), "feat": torch.rand(6, 12), "text": torch.rand(6, 7)}
    want, _ = dsah.loss(batch)
    got, parts = frame.loss(batch)
    assert got.item() == pytest.approx(want.item(), rel=1e-6) and "dsah" in parts
    want.backward()
    got.backward()
    g_dsah = dict(dsah.named_parameters())
    for k, p in frame.named_parameters():
        src = next(n for n, v in names.items() if k.startswith(v + "."))
        assert torch.allclose(p.grad, g_dsah[src + k[len(names[src]):]].grad, atol=1e-6), k
    assert torch.equal(dsah.encode_image(batch["image"]) if hasattr(dsah, "encode_image") else dsah.img_net(batch["image"]),
                       frame.encode_image(batch["image"]))


def test_dsprh_recon_and_align_settings():
    with pytest.raises(CmhashError, match="recon must be"):
        _dsprh(recon="tbh")
    with pytest.raises(CmhashError, match="align must be"):
        _dsprh(align="dsph")
    m = _dsprh(recon="none")  # no decoder built: only the codes
    assert not hasattr(m.img_tb, "dec")
    batch = {"image": torch.randn(5, 16, 3, 3), "feat": torch.rand(5, 16), "text": torch.rand(5, 7)}
    _, parts = m.loss(batch)
    assert parts["rec"] == 0.0
    with pytest.raises(CmhashError, match="needs reconstruction"):
        _dsprh(recon="none", align="dsah").loss(batch)
