"""The supervised methods through the one trainer and the CLI, on tiny labelled data."""
import json

import pytest
import torch
from click.testing import CliRunner

from cmhash.cli import main
from cmhash.config import build_config
from cmhash.checkpoint import load_checkpoint
from cmhash.model import load_model
from cmhash.train import run_experiment, train_run
from cmhash.registry import METHODS
from conftest import small_params

FAST = {"lr_lab": 0.01, "lr_img": 0.01, "lr_txt": 0.01}  # 160 items give few steps: SSAH's nets need larger ones
SMALL = {m: {**small_params(m), **(FAST if m in ("ssah", "udsph") else {})}
         for m in METHODS.names() if METHODS.get(m).supervised}


def small_cfg(root, method, epochs=4, bits=16, **train):
    return build_config(method, "wiki", bits, {"train": {"epochs": epochs, "eval_every": 2, "batch_size": 32, **train},
                                               "method": SMALL[method]}, {"data": {"root": str(root)}})


@pytest.mark.parametrize("method", sorted(SMALL))
def test_supervised_training_beats_random_codes(wiki_like, tmp_path, method):
    m = run_experiment(small_cfg(wiki_like.parent, method, epochs=30, batch_size=16), tmp_path / "run", progress=False)
    # 4 balanced classes: random codes score about 0.25
    assert m["i2t"]["map"] > 0.45 and m["t2i"]["map"] > 0.45, (m["i2t"], m["t2i"])
    assert 0 < m["i2t"]["ndcg@50"] <= 1 and 0 < m["t2i"]["ndcg@50"] <= 1


@pytest.mark.parametrize("method", ["dcmh", "ssah"])
def test_resume_restores_the_training_memories(wiki_like, tmp_path, monkeypatch, method):
    """Kill a 4-epoch run after its second checkpoint, resume it: the same weights and memories as a
    run that never stopped (the learning-rate schedules depend on the planned epochs, so the
    killed run must be the same configuration)."""
    from cmhash.train import trainer

    cfg = small_cfg(wiki_like.parent, method, epochs=4)
    full = train_run(cfg, tmp_path / "full", progress=False)
    real_save = trainer.Trainer.save

    def dying_save(self):
        real_save(self)
        if self.state.epoch == 2 and self.state.position is None:  # the epoch-end checkpoint of epoch 2
            raise KeyboardInterrupt("killed after epoch 2")

    monkeypatch.setattr(trainer.Trainer, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tmp_path / "part", progress=False)
    monkeypatch.setattr(trainer.Trainer, "save", real_save)
    st = load_checkpoint(tmp_path / "part" / "last.pt")["state"]
    assert st["epoch"] == 2 and st["training_state"]
    assert all(v.shape[0] > 0 for v in st["training_state"].values())
    resumed = train_run(cfg, tmp_path / "part", resume=True, progress=False)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for name, v in full.model.training_state().items():
        assert torch.equal(v, resumed.model.training_state()[name])
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    # the saved best model encodes without the memories
    model = load_model(tmp_path / "part" / "last.pt").net
    assert all(v.shape[0] == 0 for v in model.training_state().values())


def test_cli_trains_a_supervised_method(wiki_like, tmp_path):
    r = CliRunner()
    sets = [x for k, v in SMALL["sdeh"].items() for x in ("--set", f"method.{k}={v}")]
    res = r.invoke(main, ["train", "-m", "sdeh", "-d", "wiki", "--data-root", str(wiki_like.parent), "-b", "16",
                          "--epochs", "2", "-o", str(tmp_path / "run"), *sets])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "run" / "bits-16" / "metrics.json").read_text())
    assert "ndcg@50" in metrics["i2t"]
    assert "ndcg@50" in (tmp_path / "run" / "results.md").read_text()


def test_zero_epochs_is_a_clear_error(wiki_like, tmp_path):
    from cmhash.utils import CmhashError

    with pytest.raises(CmhashError, match="at least 1"):
        train_run(small_cfg(wiki_like.parent, "dcmh", epochs=0), tmp_path / "r", progress=False)
