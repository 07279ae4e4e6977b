"""Determinism, per method: two identical CPU runs end bit-identical, and so does a run stopped right
after a mid-epoch checkpoint and resumed (a kill at any later line loses only what follows that
checkpoint, which the resumed run recomputes). Every tensor of the checkpoint is compared: the
weights, the best-validation weights, the optimiser state and the per-item memories."""
import pytest
import torch

from cmhash.checkpoint import load_checkpoint
from cmhash.config import build_config
from cmhash.registry import METHODS
from cmhash.train import trainer as trainer_mod
from cmhash.train import train_run

from conftest import small_params


# sizes at which torch's CPU kernels split work over threads (UDSPH's word embeddings once added
# their gradients in a thread-dependent order at these sizes, not at the unit-test sizes)
LARGER = {"udsph": {"att_dim": 256, "max_tokens": 16}}


def _cfg(root, method):
    return build_config(method, "wiki", 16, {"train": {"epochs": 3, "eval_every": 1, "batch_size": 32,
                                                       "num_threads": 2, "checkpoint_every": 3},
                                             "method": {**small_params(method), **LARGER.get(method, {})}},
                        {"data": {"root": str(root)}})


def tensors(obj, prefix=""):
    """Every tensor (and number) inside a checkpoint, by path."""
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(tensors(v, f"{prefix}/{i}"))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix] = torch.tensor(obj)
    return out


def differing(a_path, b_path) -> list[str]:
    a, b = load_checkpoint(a_path), load_checkpoint(b_path)
    keep = ("model", "best_model", "optimizer", "state")
    ta = tensors({k: a[k] for k in keep if k in a})
    tb = tensors({k: b[k] for k in keep if k in b})
    ta = {k: v for k, v in ta.items() if "seconds" not in k and "/time" not in k}
    tb = {k: v for k, v in tb.items() if "seconds" not in k and "/time" not in k}
    assert set(ta) == set(tb)
    return [k for k in ta if not torch.equal(ta[k], tb[k])]


@pytest.fixture
def data_root(tmp_path):
    from conftest import write_wiki_like

    write_wiki_like(tmp_path, 192, 24, classes=3, img_dim=64, txt_dim=200)
    return tmp_path


@pytest.mark.parametrize("method", METHODS.names())
def test_two_runs_and_a_resumed_run_are_bit_identical(data_root, tmp_path, method, monkeypatch):
    train_run(_cfg(data_root, method), tmp_path / "a", progress=False)
    train_run(_cfg(data_root, method), tmp_path / "b", progress=False)
    diff = differing(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    assert not diff, f"{method}: two identical runs differ in {len(diff)} tensors, e.g. {diff[:5]}"
    if METHODS.get(method).closed_form:  # one fit and one checkpoint: there is no mid-run state to resume
        return

    real_save, saves = trainer_mod.Trainer.save, []

    def stop_after_third(self):  # the process dies right after the 3rd checkpoint (mid-epoch 2)
        real_save(self)
        saves.append(self.state.epoch)
        if len(saves) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_mod.Trainer, "save", stop_after_third)
    with pytest.raises(KeyboardInterrupt):
        train_run(_cfg(data_root, method), tmp_path / "c", progress=False)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "c" / "last.pt")["state"]["position"] is not None  # a mid-epoch stop
    train_run(_cfg(data_root, method), tmp_path / "c", resume=True, progress=False)
    diff = differing(tmp_path / "a" / "last.pt", tmp_path / "c" / "last.pt")
    assert not diff, f"{method}: the resumed run differs in {len(diff)} tensors, e.g. {diff[:5]}"
