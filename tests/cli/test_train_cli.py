"""End to end: the trainer and the CLI on tiny data (seconds on 2 cores)."""
import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cmhash.cli import main
from cmhash.config import build_config, parse_overrides
from cmhash.checkpoint import load_checkpoint
from cmhash.data.inputs import input_spec, prepare_inputs
from cmhash.train import run_experiment, train_run
from cmhash.utils import CmhashError


def small_cfg(root, method="djsrh", bits=16, epochs=4, **train):
    return build_config(method, "wiki", bits, {"train": {"epochs": epochs, "eval_every": 2, **train},
                                               "method": {"img_hidden": 64, "txt_hidden": 64}},
                        {"data": {"root": str(root)}})


@pytest.mark.parametrize("method", ["djsrh", "dsah"])
def test_training_beats_random_codes(wiki_like, tmp_path, method):
    cfg = small_cfg(wiki_like.parent, method, epochs=15)
    m = run_experiment(cfg, tmp_path / "run", progress=False)
    assert m["i2t"]["map"] > 0.45 and m["t2i"]["map"] > 0.45  # 4 balanced classes: random ~ 0.25
    assert m["best_epoch"] >= 1 and (tmp_path / "run" / "metrics.json").exists()


def test_resume_continues_to_the_same_result(wiki_like, tmp_path):
    cfg = small_cfg(wiki_like.parent, epochs=4)
    full = train_run(cfg, tmp_path / "full", progress=False)
    short = build_config("djsrh", "wiki", 16, {"train": {"epochs": 2, "eval_every": 2},
                                                "method": {"img_hidden": 64, "txt_hidden": 64}},
                         {"data": {"root": str(wiki_like.parent)}})
    train_run(short, tmp_path / "part", progress=False)
    ck = load_checkpoint(tmp_path / "part" / "last.pt")
    ck["config"] = cfg.to_dict()  # pretend the 4-epoch run died after epoch 2
    torch.save(ck, tmp_path / "part" / "last.pt")
    resumed = train_run(cfg, tmp_path / "part", resume=True, progress=False)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]


def test_checkpoint_errors(wiki_like, tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x80\x02 truncated")
    with pytest.raises(CmhashError, match="damaged or truncated"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"x": 1}, tmp_path / "other.pt")
    with pytest.raises(CmhashError, match="not a cmhash checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    cfg = small_cfg(wiki_like.parent, epochs=1)
    train_run(cfg, tmp_path / "r", progress=False)
    other = small_cfg(wiki_like.parent, bits=32, epochs=1)
    with pytest.raises(CmhashError, match="resume of a djsrh 16-bit run as djsrh 32-bit"):
        train_run(other, tmp_path / "r", resume=True, progress=False)
    lr = small_cfg(wiki_like.parent, epochs=1)
    lr.method_params["lr_img"] = 0.5
    with pytest.raises(CmhashError, match=r"other settings \(method.lr_img: 0.01 -> 0.5\)"):
        train_run(lr, tmp_path / "r", resume=True, progress=False)


def test_overrides_and_config_errors():
    assert parse_overrides(["method.beta=0.5", "train.epochs=3"]) == {"method": {"beta": 0.5}, "train": {"epochs": 3}}
    with pytest.raises(CmhashError, match="key=value"):
        parse_overrides(["beta"])
    with pytest.raises(CmhashError, match="must be one of data.X"):
        parse_overrides(["model.beta=1"])
    # typed: a wrong value names the key and the type it needs
    for item, msg in [("train.epochs=abc", "train.epochs: expected int"), ("train.epochs=2.5", "train.epochs: expected int"),
                      ("train.seed=abc", "train.seed: expected int"), ("method.beta=abc", "method.beta: expected float"),
                      ("train.num_threads=x", "train.num_threads: expected int or null"),
                      ("backbone.finetune=3", "backbone.finetune: expected bool")]:
        with pytest.raises(CmhashError, match=msg):
            build_config("djsrh", "wiki", 16, parse_overrides([item]))
    assert build_config("djsrh", "wiki", 16, parse_overrides(["method.beta=1"])).method_params["beta"] == 1
    for bits in (0, 7, 12, -8):
        with pytest.raises(CmhashError, match="multiple of 8"):
            build_config("djsrh", "wiki", bits)
    # paths are stored absolute
    cfg = build_config("djsrh", "wiki", 16, {"data": {"root": "rel/wiki"}})
    assert Path(cfg.data.root).is_absolute() and Path(cfg.backbone.cache_dir).is_absolute()
    with pytest.raises(CmhashError, match="unknown train setting"):
        build_config("djsrh", "wiki", 16, {"train": {"epoch": 3}})
    cfg = build_config("djsrh", "wiki", 16)
    assert cfg.method_params["beta"] == 0.3 and cfg.train.epochs == 200  # authors' Wiki settings
    assert build_config("djsrh", "nuswide", 16).method_params["beta"] == 0.6


def test_cli_train_evaluate_and_errors(wiki_like, tmp_path):
    r = CliRunner()
    out = tmp_path / "run"
    res = r.invoke(main, ["train", "-m", "djsrh", "-d", "wiki", "--data-root", str(wiki_like.parent), "-b", "8,16",
                          "--epochs", "2", "-o", str(out), "--set", "method.img_hidden=32",
                          "--set", "method.txt_hidden=32"])
    assert res.exit_code == 0, res.output
    assert "| DJSRH |" in res.output and "random codes" in res.output
    results = json.loads((out / "results.json").read_text())
    assert {r["bits"] for r in results["rows"]} == {8, 16}
    assert (out / "split.json").exists() and (out / "curves-16bits.png").stat().st_size > 1000
    res = r.invoke(main, ["evaluate", str(out), "--tie-averaged"])
    assert res.exit_code == 0, res.output
    assert "map_tie_avg" in res.output
    res = r.invoke(main, ["train", "-m", "nope", "-d", "wiki", "--data-root", str(wiki_like.parent)])
    assert res.exit_code == 2 and "'nope' is not one of" in res.output and "djsrh" in res.output  # the registry's
    res = r.invoke(main, ["train", "-b", "12", "-d", "wiki", "--data-root", str(wiki_like.parent)])
    assert res.exit_code == 2 and "multiple of 8" in res.output
    res = r.invoke(main, ["train", "-d", "wiki", "--data-root", str(wiki_like.parent), "--set", "train.epochs=abc"])
    assert res.exit_code == 2 and "train.epochs: expected int" in res.output
    res = r.invoke(main, ["train", "-d", "wiki", "--data-root", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "missing: file not found" in res.output
    res = r.invoke(main, ["list"])
    assert "djsrh" in res.output and "efficientnet-lite0" in res.output and "mirflickr" in res.output
    assert "index backends" in res.output and "mih" in res.output


def test_cli_demo_small(tmp_path):
    """The demo's whole path (render, pretrained features, train, evaluate, plots) on 200 items."""
    r = CliRunner()
    res = r.invoke(main, ["demo", "-o", str(tmp_path / "demo"), "--n-items", "200", "-b", "16", "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "label prior" in res.output and (tmp_path / "demo" / "results.md").exists()
    assert list(Path(os.environ["CMHASH_CACHE_DIR"]).glob("efficientnet-lite0-*.npy"))  # the user cache folder
    res2 = r.invoke(main, ["demo", "-o", str(tmp_path / "demo"), "--n-items", "200", "-b", "16", "--epochs", "2",
                           "--resume"])
    assert res2.exit_code == 0, res2.output


def finetune_cfg(tmp_path):
    """DJSRH through a trainable AlexNet on 40 tiny images: the fine-tuning path on the CPU."""
    return build_config("djsrh", "synthetic", 8,
                        {"train": {"epochs": 1, "batch_size": 8, "val_fraction": 0.0},
                         "backbone": {"name": "alexnet", "image_size": 64, "finetune": True,
                                      "cache_dir": str(tmp_path / "cache")},
                         "data": {"options": {"n_items": 40, "image_size": 32}}})


def test_finetune_path_through_a_backbone(tmp_path):
    """Raw pixels through a trainable backbone (the GPU path), on a few tiny images on the CPU."""
    import warnings

    cfg = finetune_cfg(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs = prepare_inputs(cfg)
        assert input_spec(cfg, inputs).image.mode == "pixels" and inputs.image_source(input_spec(cfg, inputs)) is None
        res = train_run(cfg, tmp_path / "ft", inputs, progress=False)
    assert res.model.img_net.backbone is not None
    assert res.model.img_net.backbone.features[0].weight.grad is not None


def test_resume_extends_and_shortens_a_run(wiki_like, tmp_path):
    """--resume with other --epochs continues a finished run to the new length, or stops a run
    earlier; a finished run at the same length is read back, not trained again."""
    m2 = run_experiment(small_cfg(wiki_like.parent, epochs=2), tmp_path / "run", progress=False, curves=False)
    assert m2["epochs"] == 2
    m4 = run_experiment(small_cfg(wiki_like.parent, epochs=4), tmp_path / "run", resume=True, progress=False,
                        curves=False)
    assert m4["epochs"] == 4
    assert [h["epoch"] for h in load_checkpoint(tmp_path / "run" / "last.pt")["state"]["history"]] == [1, 2, 3, 4]
    again = run_experiment(small_cfg(wiki_like.parent, epochs=4), tmp_path / "run", resume=True, progress=False,
                           curves=False)
    assert again == m4  # read back
    m3 = run_experiment(small_cfg(wiki_like.parent, epochs=3), tmp_path / "run", resume=True, progress=False,
                        curves=False)
    assert m3["epochs"] == 3  # nothing left to train: the kept best state is evaluated


def test_epochs_scale_with_the_training_set_size():
    from cmhash.config import TrainConfig, scale_epochs

    assert scale_epochs(TrainConfig(epochs=40, epochs_at_items=2000), 1000).epochs == 80
    assert scale_epochs(TrainConfig(epochs=40, epochs_at_items=2000), 100).epochs == 80  # at most 2x
    assert scale_epochs(TrainConfig(epochs=40, epochs_at_items=2000), 10**6).epochs == 4  # at least a tenth
    tc = scale_epochs(TrainConfig(epochs=40, epochs_at_items=2000, eval_every=5), 1680)
    assert (tc.epochs, tc.epochs_at_items) == (48, 0) and scale_epochs(tc, 10).epochs == 48  # resolved once
    assert scale_epochs(TrainConfig(epochs=7), 10).epochs == 7  # no scaling asked
    cfg = build_config("djsrh", "folder", 16, None, {"train": {"epochs": 5}})
    assert cfg.train.epochs == 5 and cfg.train.epochs_at_items == 0  # epochs given by the user stay as given
    assert build_config("djsrh", "folder", 16).train.epochs_at_items == 2000


def test_cca_itq_refitted_on_a_finetuned_backbone(tmp_path):
    """The fine-tuned regime's linear row (``eval.refit``): the trained backbone's pooled features
    differ from the frozen ones, and CCA-ITQ fitted on them scores on the same protocol."""
    import warnings

    import numpy as np

    from cmhash.eval.refit import finetuned_features, refit_cca_itq

    cfg = finetune_cfg(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs = prepare_inputs(cfg)
        train_run(cfg, tmp_path / "ft", inputs, progress=False)
        feat = finetuned_features(tmp_path / "ft", inputs, 8)
        m = refit_cca_itq(tmp_path / "ft", inputs, 8)
    assert feat.shape == inputs.feat.shape and not np.allclose(feat, inputs.feat)
    assert 0 <= m["i2t"]["map"] <= 1 and 0 <= m["t2i"]["map"] <= 1
    with pytest.raises(CmhashError, match="no backbone it trained through"):
        finetuned_features(_frozen_run(tmp_path), inputs, 8)


def _frozen_run(tmp_path):
    cfg = build_config("djsrh", "synthetic", 8, {"train": {"epochs": 1, "batch_size": 8},
                                                  "method": {"img_hidden": 8, "txt_hidden": 8},
                                                  "data": {"options": {"n_items": 40, "image_size": 32}},
                                                  "backbone": {"cache_dir": str(tmp_path / "cache2")}})
    train_run(cfg, tmp_path / "frozen", prepare_inputs(cfg), progress=False)
    return tmp_path / "frozen"
