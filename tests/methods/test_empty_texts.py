"""Empty texts (a caption with no known word gives an all-zero text vector): every method trains
on a dataset whose text rows are all zero without producing NaN, and a NaN names its likely cause."""
import numpy as np
import pytest
import scipy.io

from cmhash.config import build_config
from cmhash.registry import METHODS
from cmhash.train import run_experiment

from conftest import small_params


def write_empty_texts(folder, n_train=64, n_test=16, img_dim=12, txt_dim=6):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n_train + n_test)
    img = np.abs(rng.normal(size=(3, img_dim))[y] + 0.3 * rng.normal(size=(len(y), img_dim)))
    txt = np.zeros((len(y), txt_dim))  # every text row empty
    scipy.io.savemat(folder / "wikiData.mat", {"I_tr": img[:n_train], "I_te": img[n_train:], "T_tr": txt[:n_train],
                                               "T_te": txt[n_train:], "L_tr": (y[:n_train] + 1)[:, None],
                                               "L_te": (y[n_train:] + 1)[:, None]})
    return folder


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_on_empty_texts_without_nan(tmp_path, method):
    root = write_empty_texts(tmp_path)
    cfg = build_config(method, "wiki", 16, {"train": {"epochs": 1, "eval_every": 1, "batch_size": 16},
                                            "method": small_params(method)}, {"data": {"root": str(root)}})
    m = run_experiment(cfg, tmp_path / "run", progress=False, curves=False)  # a NaN loss would raise
    assert 0 <= m["i2t"]["map"] <= 1 and 0 <= m["t2i"]["map"] <= 1


def test_nan_loss_names_a_cause_and_no_missing_checkpoint(tmp_path, monkeypatch):
    import torch

    from cmhash.methods.djsrh import DJSRH
    from cmhash.utils import CmhashError

    root = write_empty_texts(tmp_path)
    cfg = build_config("djsrh", "wiki", 16, {"train": {"epochs": 1, "batch_size": 16}, "method": small_params("djsrh")},
                       {"data": {"root": str(root)}})
    original = DJSRH.loss
    monkeypatch.setattr(DJSRH, "loss", lambda self, batch: (original(self, batch)[0] * torch.nan, {}))
    with pytest.raises(CmhashError, match=r"texts are empty .* no checkpoint was written yet"):
        run_experiment(cfg, tmp_path / "run", progress=False, curves=False)
