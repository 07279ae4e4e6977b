"""The real files in ../shared/data (skipped when absent)."""
import numpy as np
import scipy.io

from cmhash.data import load_dataset
from conftest import shared_file


def test_real_mirflickr_label_and_text_files(tmp_path):
    lall = shared_file("mirflickr25k", "mirflickr25k-lall.mat")
    yall = shared_file("mirflickr25k", "mirflickr25k-yall.mat")
    for f in (lall, yall):
        (tmp_path / f.name).symlink_to(f)
    # the image files are not available here: add small stand-in features in the XAll format
    scipy.io.savemat(tmp_path / "mirflickr25k-iall-vgg.mat", {"XAll": np.zeros((20015, 4), np.float32)})
    ds = load_dataset("mirflickr", tmp_path)
    d = ds.data
    assert d.labels.shape == (20015, 24) and d.texts.shape == (20015, 1386)
    assert d.labels.sum(1).min() >= 1
    split = ds.split(seed=0)
    assert split.sizes() == {"query": 2000, "train": 5000, "database": 18015}
    assert not set(split.query) & set(split.database)


def test_real_wiki():
    path = shared_file("wiki", "wikiData.mat")
    ds = load_dataset("wiki", path.parent)
    assert ds.data.images.shape == (2866, 128) and ds.data.texts.shape == (2866, 10)
    assert ds.data.labels.shape == (2866, 10) and (ds.data.labels.sum(1) == 1).all()
    assert ds.split().sizes() == {"query": 693, "train": 2173, "database": 2173}
