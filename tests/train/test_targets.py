"""Similarity targets in CCA's canonical space (``train.targets: canonical``, ``train/targets.py``)
and the training-set size knob (``data.train_items``) the deep-vs-linear study uses."""
import numpy as np
import pytest

from cmhash.config import build_config
from cmhash.data.base import DataError
from cmhash.data.protocol import Split
from cmhash.train import run_experiment
from cmhash.train.targets import canonical_space
from cmhash.utils import CmhashError


def two_views(n=300, seed=0):
    """Images and texts sharing a 3-d latent, each with its own noise dimensions; labels from the latent."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    x = np.concatenate([z @ rng.normal(size=(3, 8)), 3 * rng.normal(size=(n, 6))], 1)
    t = np.concatenate([z @ rng.normal(size=(3, 5)), 3 * rng.normal(size=(n, 4))], 1)
    labels = np.eye(2)[(z[:, 0] > 0).astype(int)].astype(np.float32)
    return x, t, labels


def test_canonical_space_pairs_each_image_with_its_text_and_ignores_rows_it_was_not_fitted_on():
    x, t, labels = two_views()
    train, val = np.arange(0, 200), np.arange(200, 240)
    u, v, chosen = canonical_space(x, t, labels, train, val, dims=3)
    assert u.shape == (300, 3) and v.shape == (300, 3) and chosen["dims"] == 3
    cos = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    assert np.median(cos[train]) > 0.9  # the shared latent, found: raw features' cosines cannot compare views
    x2 = x.copy()
    x2[240:] = 100.0  # rows neither fitted on nor validated on
    u2, _, chosen2 = canonical_space(x2, t, labels, train, val, dims=3)
    assert chosen2 == chosen and np.allclose(u2[:240], u[:240])


def test_canonical_space_without_labels_chooses_by_each_items_own_text():
    x, t, _ = two_views()
    u, v, chosen = canonical_space(x, t, None, np.arange(200), np.arange(200, 260), dims=2)
    assert u.shape == (300, 2) and 0 < chosen["val_score"] <= 1


@pytest.mark.parametrize("method", ["jdsh", "ucch"])
def test_a_method_trains_on_canonical_targets(wiki_like, tmp_path, method):
    params = {"jdsh": {"txt_hidden": 16}, "ucch": {"hidden": 16, "negatives": 8}}[method]
    cfg = build_config(method, "wiki", 16, {"train": {"epochs": 2, "eval_every": 1, "targets": "canonical", "batch_size": 32},
                                             "method": params}, {"data": {"root": str(wiki_like)}})
    m = run_experiment(cfg, tmp_path / method, progress=False, curves=False)
    assert 0 <= m["i2t"]["map"] <= 1


def test_canonical_targets_refused_where_a_method_has_none(wiki_like, tmp_path):
    cfg = build_config("dcmh", "wiki", 16, {"train": {"epochs": 1, "targets": "canonical"}},
                       {"data": {"root": str(wiki_like)}})
    with pytest.raises(CmhashError, match="no similarity targets.*methods that do: .*jdsh"):
        run_experiment(cfg, tmp_path / "dcmh", progress=False, curves=False)
    with pytest.raises(CmhashError, match="train.targets must be"):
        build_config("jdsh", "wiki", 16, {"train": {"targets": "labels"}}, {"data": {"root": str(wiki_like)}})


def test_ucch_canonical_memory_start_with_fewer_or_more_directions_than_bits():
    import torch

    from conftest import method_on_dims

    m = method_on_dims("ucch", 16, 6, 5, {"hidden": 8, "negatives": 2})
    m.targets = "canonical"
    m.attach_training_set(torch.zeros(3, 1))
    u = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    m.attach_training_features(u, u)  # 5 directions, 16 bits: the first 5 bits are sgn(u), 11 hyperplanes
    assert m.memory.v.shape == (3, 16) and torch.equal(torch.sign(m.memory.v[:, :5]), torch.sign(u))
    with pytest.raises(CmhashError, match="canonical space has 20 directions"):
        m.attach_training_features(torch.randn(3, 20), torch.randn(3, 20))


def test_fewer_training_items_keeps_queries_and_database():
    split = Split(np.arange(10), np.arange(10, 60), np.arange(10, 60))
    small = split.fewer_training(20, seed=3)
    assert len(small.train) == 20 and set(small.train) <= set(split.train)
    assert np.array_equal(small.query, split.query) and np.array_equal(small.database, split.database)
    assert np.array_equal(small.train, split.fewer_training(20, seed=3).train)  # the seed decides the draw
    with pytest.raises(DataError, match="between 1 and the split's 50"):
        split.fewer_training(51)
