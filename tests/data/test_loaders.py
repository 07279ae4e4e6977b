"""Loaders, validation, protocols and the embedded dataset, on tiny generated files."""
import h5py
import numpy as np
import pytest
import scipy.io

from cmhash.data import DataError, PairedData, Split, load_dataset, make_split, make_synthetic, validate_paired
from cmhash.data.matio import H5Images, MatFile
from cmhash.data.protocol import validation_split
from cmhash.utils import CmhashError


def write_v73(path, **arrays):
    """MATLAB v7.3 layout: HDF5 with every array stored transposed (column-major)."""
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=np.asarray(v).T)


def make_lall_dir(tmp_path, n=60, c=5, d=12, prefix="mirflickr25k", v73=False, pixels=False, seed=0):
    rng = np.random.default_rng(seed)
    lab = (rng.random((n, c)) < 0.4).astype(np.uint8)
    lab[np.arange(n), rng.integers(0, c, n)] = 1
    txt = (rng.random((n, d)) < 0.3).astype(np.uint8)
    save = (lambda p, **a: write_v73(p, **a)) if v73 else (lambda p, **a: scipy.io.savemat(p, a))
    save(tmp_path / f"{prefix}-lall.mat", LAll=lab)
    save(tmp_path / f"{prefix}-yall.mat", YAll=txt)
    if pixels:
        img = rng.integers(0, 255, (n, 3, 8, 6), dtype=np.uint8)  # (N, 3, H, W)
        with h5py.File(tmp_path / f"{prefix}-iall.mat", "w") as f:
            f.create_dataset("IAll", data=img.transpose(0, 1, 3, 2))  # MATLAB's (N, 3, W, H) as h5py sees it
        return lab, txt, img
    feat = rng.normal(size=(n, 16))
    save(tmp_path / f"{prefix}-iall-vgg.mat", XAll=feat)
    return lab, txt, feat


@pytest.mark.parametrize("v73", [False, True])
def test_mirflickr_layout_v5_and_v73(tmp_path, v73):
    lab, txt, feat = make_lall_dir(tmp_path, v73=v73)
    ds = load_dataset("mirflickr", tmp_path)
    np.testing.assert_array_equal(ds.data.labels, lab)
    np.testing.assert_array_equal(ds.data.texts, txt)
    np.testing.assert_allclose(ds.data.images, feat.astype(np.float32))
    assert ds.data.image_kind == "features"


def test_iall_is_read_lazily_with_matlab_layout(tmp_path):
    lab, txt, img = make_lall_dir(tmp_path, pixels=True)
    ds = load_dataset("nuswide", tmp_path, prefix="mirflickr25k")
    imgs = ds.data.images
    assert isinstance(imgs, H5Images) and imgs.shape == (60, 3, 8, 6)
    np.testing.assert_array_equal(ds.data.image_rows([5, 1, 5]), img[[5, 1, 5]])
    sub = ds.data.subset(np.array([3, 4]))
    np.testing.assert_array_equal(sub.image_rows([1]), img[[4]])


def test_missing_key_and_mismatched_rows(tmp_path):
    make_lall_dir(tmp_path)
    scipy.io.savemat(tmp_path / "mirflickr25k-yall.mat", {"Y": np.zeros((60, 3))})
    with pytest.raises(DataError, match="missing key 'YAll'.*keys present: Y"):
        load_dataset("mirflickr", tmp_path)
    scipy.io.savemat(tmp_path / "mirflickr25k-yall.mat", {"YAll": np.zeros((59, 3))})
    with pytest.raises(DataError, match="row counts differ"):
        load_dataset("mirflickr", tmp_path)


def test_corrupt_and_empty_files(tmp_path):
    make_lall_dir(tmp_path)
    (tmp_path / "mirflickr25k-lall.mat").write_bytes(b"MATLAB 5.0 garbage" * 3)
    with pytest.raises(DataError, match="mirflickr25k-lall.mat"):
        load_dataset("mirflickr", tmp_path)
    (tmp_path / "mirflickr25k-lall.mat").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_dataset("mirflickr", tmp_path)
    with pytest.raises(DataError, match="not found"):
        MatFile(tmp_path / "nope.mat")


def test_unknown_dataset_and_missing_root(tmp_path):
    with pytest.raises(CmhashError, match="unknown dataset 'flickr'.*mirflickr"):
        load_dataset("flickr", tmp_path)
    with pytest.raises(DataError, match="needs a data folder"):
        load_dataset("mirflickr", None)


def _pd(**kw):
    base = dict(images=np.zeros((4, 3), np.float32), texts=np.ones((4, 2), np.float32),
                labels=np.eye(4, 2, dtype=np.uint8) + np.eye(4, 2, -2, dtype=np.uint8))
    base.update(kw)
    return PairedData(**base)


def test_validation_errors():
    with pytest.raises(DataError, match="NaN"):
        validate_paired(_pd(texts=np.array([[1, np.nan]] * 4)), "x.mat")
    with pytest.raises(DataError, match="row counts"):
        validate_paired(_pd(images=np.zeros((3, 3))), "x.mat")
    with pytest.raises(DataError, match="0/1"):
        validate_paired(_pd(labels=np.full((4, 2), 2)), "x.mat")
    with pytest.raises(DataError, match="uint8"):
        validate_paired(_pd(images=np.zeros((4, 3, 8, 8), np.float32), image_kind="pixels"), "x.mat")
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        validate_paired(_pd(images=np.zeros((4, 1, 8, 8), np.uint8), image_kind="pixels"), "x.mat")


def test_empty_label_rows_reported_then_dropped_on_request():
    lab = np.array([[1, 0], [0, 0], [0, 1], [1, 1]], np.uint8)
    with pytest.warns(UserWarning, match="1 items have all-zero label rows"):
        d = validate_paired(_pd(labels=lab))
    assert len(d) == 4
    with pytest.warns(UserWarning, match="dropped 1"):
        d = validate_paired(_pd(labels=lab), drop_empty_labels=True)
    assert len(d) == 3 and d.info["dropped_empty_label_rows"] == [1]


def test_wiki_labels_ids_or_onehot(tmp_path):
    rng = np.random.default_rng(0)
    ids_tr, ids_te = rng.integers(1, 11, (20, 1)), rng.integers(1, 11, (7, 1))
    arrays = dict(I_tr=rng.random((20, 6)), I_te=rng.random((7, 6)), T_tr=rng.random((20, 3)),
                  T_te=rng.random((7, 3)), L_tr=ids_tr, L_te=ids_te)
    scipy.io.savemat(tmp_path / "wikiData.mat", arrays)
    ds = load_dataset("wiki", tmp_path)
    assert ds.data.labels.shape == (27, 10)
    assert ds.data.labels[0, ids_tr[0, 0] - 1] == 1
    split = ds.split()
    assert split.sizes() == {"query": 7, "train": 20, "database": 20}
    onehot = dict(arrays, L_tr=np.eye(10)[ids_tr[:, 0] - 1], L_te=np.eye(10)[ids_te[:, 0] - 1])
    scipy.io.savemat(tmp_path / "w2.mat", onehot)
    np.testing.assert_array_equal(load_dataset("wiki", tmp_path / "w2.mat").data.labels, ds.data.labels)
    scipy.io.savemat(tmp_path / "bad.mat", dict(arrays, L_te=ids_te[:5]))
    with pytest.raises(DataError, match="I_te/L_te"):
        load_dataset("wiki", tmp_path / "bad.mat")


def test_djsrh_split_is_stratified_seeded_and_disjoint():
    rng = np.random.default_rng(3)
    lab = (rng.random((3000, 24)) < 0.15).astype(np.uint8)
    lab[np.arange(3000), rng.integers(0, 24, 3000)] = 1
    s = make_split(lab, "djsrh", n_query=500, n_train=1000, seed=7, first_factor=2)
    assert s.sizes() == {"query": 500, "train": 1000, "database": 2500}
    assert not set(s.query) & set(s.database)
    assert set(s.train) <= set(s.database)
    assert lab[s.query].sum(0).min() >= 500 // 25  # every class is represented among the queries
    s2 = make_split(lab, "djsrh", n_query=500, n_train=1000, seed=7, first_factor=2)
    np.testing.assert_array_equal(s.query, s2.query)
    assert not np.array_equal(s.query, make_split(lab, "djsrh", 500, 1000, seed=8).query)


def test_dcmh_split_and_save_load(tmp_path):
    lab = np.eye(5, dtype=np.uint8)[np.arange(200) % 5]
    s = make_split(lab, "dcmh", n_query=20, n_train=100, seed=1)
    assert s.sizes() == {"query": 20, "train": 100, "database": 180}
    s.save(tmp_path / "split.json")
    s2 = Split.load(tmp_path / "split.json")
    np.testing.assert_array_equal(s2.train, s.train)
    assert s2.protocol == "dcmh" and s2.seed == 1
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="split file"):
        Split.load(tmp_path / "bad.json")
    with pytest.raises(DataError, match="unknown protocol"):
        make_split(lab, "random", 10, 10)
    tr, val = validation_split(s.train, 0.1, 0)
    assert len(val) == 10 and not set(tr) & set(val) and set(tr) | set(val) == set(s.train)


def test_synthetic_is_deterministic_and_well_formed():
    a, b = make_synthetic(60, 32, seed=5), make_synthetic(60, 32, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.texts, b.texts)
    assert a.images.shape == (60, 3, 32, 32) and a.images.dtype == np.uint8
    counts = a.labels.sum(1)
    assert counts.min() >= 1 and counts.max() <= 4
    assert (a.texts.sum(1) > 0).all()
    assert not np.array_equal(a.images, make_synthetic(60, 32, seed=6).images)


def write_folder(tmp_path, rows, n_img=12):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n_img):
        Image.fromarray(rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    (tmp_path / "captions.tsv").write_text("\n".join(rows) + "\n")


def test_folder_dataset_keeps_captions_as_text(tmp_path):
    rows = [f"im{i}.png\tred {'cat' if i % 2 else 'dog'} word{i}\t{'a' if i % 2 else 'b'}" for i in range(12)]
    write_folder(tmp_path, rows + ["im0.png\t\ta"])
    ds = load_dataset("folder", tmp_path, image_size=16, n_query=3, n_train=9)
    d = ds.data
    assert d.image_rows([0, 5]).shape == (2, 3, 16, 16)
    assert d.texts is None and d.captions[1] == "red cat word1" and ds.text_encoder == "auto"
    assert d.info["empty_captions"] == 1  # an empty caption is kept and counted
    assert d.label_names == ["a", "b"]


def test_folder_bad_inputs(tmp_path):
    write_folder(tmp_path, ["im0.png", "im1.png\tok"])
    with pytest.raises(DataError, match=r"captions.tsv:1: expected 'image<TAB>caption"):
        load_dataset("folder", tmp_path)
    (tmp_path / "captions.tsv").write_bytes(b"im0.png\t\xff\xfe bad\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset("folder", tmp_path)
    (tmp_path / "captions.tsv").write_text("missing.png\thello\n")
    with pytest.raises(DataError, match="'missing.png' not found"):
        load_dataset("folder", tmp_path)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    from cmhash.data.images import FolderImages

    with pytest.raises(DataError, match="not a readable image"):
        FolderImages([tmp_path / "junk.png"], 16).take([0])


def test_hdf5_images_read_by_worker_processes(tmp_path):
    """Rows of a lazily read HDF5 image array, read in 2 worker processes (each opens its own
    handle), arrive in order and equal a direct read; a damaged file is a clear error there too."""
    import h5py

    from cmhash.data.matio import H5Images
    from cmhash.data.features import image_batches
    from cmhash.utils import CmhashError

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (37, 3, 8, 6), dtype=np.uint8)
    with h5py.File(tmp_path / "iall.mat", "w") as f:
        f.create_dataset("IAll", data=arr)
    imgs = H5Images(tmp_path / "iall.mat", "IAll", layout="nchw")
    imgs.take(np.arange(3))  # the parent holds an open handle before the workers fork

    class D:
        images = imgs

        def image_rows(self, idx):
            return imgs.take(idx)

    rows = rng.permutation(37)
    got = np.concatenate([x.numpy() for _, x in image_batches(D(), rows, 5, workers=2)])
    np.testing.assert_array_equal(got, arr[rows])
    (tmp_path / "iall.mat").write_bytes((tmp_path / "iall.mat").read_bytes()[:1200])
    with pytest.raises(CmhashError, match="cannot read images"):
        list(image_batches(D(), rows, 5, workers=2))
