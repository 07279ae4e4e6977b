"""Every registry, looped over at run time: each entry meets its registry's contract.

The loops run inside the tests, after collection, so an entry that any test file registers (a
method, a backend, ... defined in a test module) is checked too, with no list to edit. A failure
names the entries that broke the contract."""
import numpy as np
import torch

from cmhash.registry import BACKBONES, DATASETS, INDEX_BACKENDS, METHODS, TEXT_ENCODERS
from cmhash.utils import CmhashError

from conftest import write_wiki_like

CAPTIONS = ["a red boat on the river", "two planes on a runway", "green trees by a road", "", "a boat", "Über 中文"]


def each(names, check) -> list[str]:
    """``check(name)`` for every name; the names whose check failed, with why."""
    bad = []
    for name in names:
        try:
            check(name)
        except Exception as e:  # noqa: BLE001 - reported below, per entry
            bad.append(f"{name}: {type(e).__name__}: {e}")
    print("checked:", ", ".join(names))
    return bad


def test_every_method_trains_encodes_and_reloads(tmp_path):
    """Each method, at its own small settings (``HashMethod.small``), trains on a tiny labelled set,
    scores in [0, 1], and its checkpoint reloads to the same codes."""
    from cmhash.config import build_config
    from cmhash.model import load_model
    from cmhash.train import run_experiment

    (tmp_path / "data").mkdir()
    root = write_wiki_like(tmp_path / "data", 96, 24, classes=3, img_dim=12, txt_dim=6).parent
    x, t = np.random.default_rng(0).normal(size=(5, 12)), np.abs(np.random.default_rng(1).normal(size=(5, 6)))

    def check(name):
        cls = METHODS.get(name)
        assert cls.name == name and METHODS.describe()[name], "a name and a help line"
        cfg = build_config(name, "wiki", 16, {"train": {"epochs": 2, "eval_every": 1, "batch_size": 32},
                                               "method": dict(cls.small)}, {"data": {"root": str(root)}})
        m = run_experiment(cfg, tmp_path / name, progress=False, curves=False)
        assert 0 <= m["i2t"]["map"] <= 1 and 0 <= m["t2i"]["map"] <= 1, m
        a, b = load_model(tmp_path / name, device="cpu"), load_model(tmp_path / name, device="cpu")
        xi = torch.as_tensor(x, dtype=torch.float32)
        ci, ct = a.encode_image(xi), a.encode_text(torch.as_tensor(t, dtype=torch.float32))
        assert ci.shape == (5, 16) and ct.shape == (5, 16) and torch.isfinite(ci).all()
        assert torch.equal(torch.sign(ci), torch.sign(b.encode_image(xi)))

    assert not each(METHODS.names(), check)


def test_every_index_backend_answers_like_brute_force_and_round_trips(tmp_path):
    """Each backend that keeps its index in its file: exact top-k equal to brute force (ties by
    insertion order), saved, loaded and searched again, and inside a store: built, reopened, searched.
    Backends with state outside the file (a database) are tested in index/test_milvus.py."""
    from cmhash.index.base import load_index, make_index
    from cmhash.index.store import IndexStore

    from cmhash.kernels import knn_numpy

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (300, 8), dtype=np.uint8)
    q = rng.integers(0, 256, (7, 8), dtype=np.uint8)
    want_d, want = knn_numpy(codes, q, 10)  # the numpy reference: (distance, row) order

    def check(name):
        cls = INDEX_BACKENDS.get(name)
        if cls.store_files(tmp_path):
            return
        try:
            ix = make_index(name, 64)
        except CmhashError as e:
            if "pip install" in str(e):
                return  # an optional extra (faiss) not installed: nothing to test here
            raise
        assert ix.backend == name
        ids = np.arange(1000, 1300)
        ix.add(codes, ids)
        kw = {"exact": True} if cls.approximate else {}
        dist, got = ix.search(q, 10, **kw)
        assert (got == ids[want]).all() and (dist == want_d).all()
        path = ix.save(tmp_path / f"{name}.cmhidx")
        again = load_index(path, bits=64)
        assert type(again) is cls and (again.search(q, 10, **kw)[1] == got).all()
        store = IndexStore.create(tmp_path / f"store-{name}", 64, backend=name)
        store.add(codes, codes[::-1].copy(), ids=ids)
        store.close()
        reopened = IndexStore.open(tmp_path / f"store-{name}")
        assert reopened.manifest["backend"] == name
        assert [r["id"] for r in reopened.search(q[:1], 10, target="image")[0]] == ids[want[0]].tolist()
        reopened.close()

    assert not each(INDEX_BACKENDS.names(), check)


def test_every_text_encoder_gives_finite_vectors_of_its_dim():
    """Each encoder, fitted on a few captions (nothing to fit for a pretrained one), maps captions,
    empty and foreign ones included, to finite (N, dim) vectors and explains a query."""
    from cmhash.text.base import create_text_encoder

    def check(name):
        try:
            enc = create_text_encoder(name).fit(CAPTIONS)
        except CmhashError as e:
            if "pip install" in str(e) or "not installed" in str(e):
                return  # an optional extra ([text]) not installed
            raise
        v = enc.transform(CAPTIONS)
        assert v.shape == (len(CAPTIONS), enc.dim) and v.dtype == np.float32 and np.isfinite(v).all()
        assert isinstance(enc.explain("a boat"), dict)

    assert not each(TEXT_ENCODERS.names(), check)


def test_every_backbone_maps_pixels_to_its_declared_sizes():
    """Each backbone (random weights: ``load=False``) maps uint8 pixels to (B, out_dim) features and
    (B, map_channels, h, w) maps."""
    def check(name):
        net = BACKBONES.get(name)(load=False).eval()
        px = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
        with torch.no_grad():
            fmap = net.feature_map(net.preprocess(px))
            feat = net.pool(fmap)
        assert fmap.shape[:2] == (2, net.map_channels) and feat.shape == (2, net.out_dim)
        assert torch.isfinite(feat).all()

    assert not each(BACKBONES.names(), check)


def test_every_dataset_names_what_is_missing(tmp_path):
    """Each dataset that reads files, pointed at an empty folder, is one clear error (no traceback
    from deep inside a reader); one that needs no files loads."""
    from cmhash.data import load_dataset

    def check(name):
        try:
            loaded = load_dataset(name, str(tmp_path), **({"n_items": 60} if name == "synthetic" else {}))
        except CmhashError as e:
            assert str(tmp_path) in str(e) or "needs" in str(e), str(e)
            return
        assert len(loaded.data) > 0

    assert not each(DATASETS.names(), check)


def test_every_method_trained_briefly_beats_random_codes(tmp_path):
    """Each method, at its small settings, trained for a few epochs on a tiny set whose features carry
    the class, ranks far better than random codes do (the same queries and database, both
    directions): a method whose loss learns nothing fails here whatever its equations' tests say."""
    from cmhash.config import build_config
    from cmhash.eval.metrics import evaluate_retrieval
    from cmhash.train import run_experiment

    (tmp_path / "data").mkdir()
    root = write_wiki_like(tmp_path / "data", 256, 64, classes=4, img_dim=12, txt_dim=6, noise=0.3).parent
    rng = np.random.default_rng(0)
    labels = np.eye(4)[rng.integers(0, 4, 64)], np.eye(4)[rng.integers(0, 4, 256)]
    chance = evaluate_retrieval(np.sign(rng.normal(size=(64, 16))), np.sign(rng.normal(size=(256, 16))),
                                *labels, topk=None)["map"]  # about 0.3 with 4 classes
    scores = {}

    def check(name):
        cls = METHODS.get(name)
        if cls.closed_form:
            cfg = build_config(name, "wiki", 16, {}, {"data": {"root": str(root)}})
        else:
            cfg = build_config(name, "wiki", 16, {"train": {"epochs": 60, "eval_every": 20, "batch_size": 32},
                                                   "method": dict(cls.small)}, {"data": {"root": str(root)}})
        m = run_experiment(cfg, tmp_path / name, progress=False, curves=False)
        scores[name] = got = (m["i2t"]["map"] + m["t2i"]["map"]) / 2
        assert got > chance + 0.2, f"mAP {got:.3f}, random codes {chance:.3f}"

    shipped = [n for n in METHODS.names() if METHODS.get(n).__module__.startswith("cmhash.")]  # not tests' toys
    bad = each(shipped, check)
    print({k: round(v, 3) for k, v in scores.items()}, "random", round(chance, 3))
    assert not bad
