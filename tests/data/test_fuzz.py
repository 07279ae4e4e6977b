"""Loaders under hypothesis: random shapes and dtypes, truncated and corrupt MAT/HDF5 files, random
bytes as images, empty and non-UTF-8 caption files. Every outcome is a loaded dataset or a
``CmhashError`` naming the problem: never a traceback from inside numpy/scipy/h5py, never a hang,
never a partial output file."""
import contextlib
import io
import signal
import warnings

import h5py
import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cmhash.data import load_dataset
from cmhash.utils import CmhashError

# CI runs a fixed (derandomised) set of 60 examples per test; CMHASH_FUZZ_EXAMPLES=N runs N random ones
_DEEP = __import__("os").environ.get("CMHASH_FUZZ_EXAMPLES")
FUZZ = settings(max_examples=int(_DEEP or 60), derandomize=_DEEP is None, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
WIKI_KEYS = ("I_tr", "I_te", "T_tr", "T_te", "L_tr", "L_te")


@contextlib.contextmanager
def no_hang(seconds=20):
    def boom(*_):
        raise TimeoutError(f"loader still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def loads_or_clear_error(fn):
    """fn() either returns or raises CmhashError with a message; anything else fails the test."""
    with no_hang(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except CmhashError as e:
            assert str(e).strip()
            return None


def _full(shape, dt, fill):
    with np.errstate(invalid="ignore"):
        return np.full(shape, fill).astype(dt)


arrays = st.one_of(
    st.builds(_full,
              st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple),
              st.sampled_from(["float64", "float32", "int32", "uint8", "int8", "bool", "complex64"]),
              st.sampled_from([0, 1, 2, 3, -1, 0.5, 11, np.nan, np.inf])),
    st.builds(lambda n, d, seed: np.random.default_rng(seed).normal(size=(n, d)),
              st.integers(0, 6), st.integers(1, 5), st.integers(0, 99)),
    st.just(np.array(["text", "more"], dtype=object)),
)


def _valid_wiki(rng, n_tr=12, n_te=4):
    return {"I_tr": rng.random((n_tr, 6)), "I_te": rng.random((n_te, 6)), "T_tr": rng.random((n_tr, 3)),
            "T_te": rng.random((n_te, 3)), "L_tr": rng.integers(1, 4, (n_tr, 1)), "L_te": rng.integers(1, 4, (n_te, 1))}


def _save_v73(path, d):
    with h5py.File(path, "w") as f:
        for k, v in d.items():
            f.create_dataset(k, data=np.asarray(v).T)


@FUZZ
@given(replace=st.dictionaries(st.sampled_from(WIKI_KEYS), arrays, max_size=3),
       drop=st.sets(st.sampled_from(WIKI_KEYS), max_size=2), v73=st.booleans())
def test_wiki_loader_with_random_arrays(tmp_path, replace, drop, v73):
    d = _valid_wiki(np.random.default_rng(0))
    d.update(replace)
    for k in drop:
        d.pop(k)
    path = tmp_path / "wikiData.mat"
    try:
        _save_v73(path, d) if v73 else scipy.io.savemat(path, d)
    except Exception:  # noqa: BLE001 - a combination the writer itself refuses
        assume(False)
    loaded = loads_or_clear_error(lambda: load_dataset("wiki", str(tmp_path)))
    if loaded is not None:
        data = loaded.data
        assert len(data.images) == len(data.texts) == len(data.labels)
        assert np.isfinite(np.asarray(data.images, np.float64)).all() and np.isfinite(data.texts).all()


@FUZZ
@given(cut=st.floats(0.0, 0.999), flips=st.lists(st.tuples(st.floats(0, 0.999), st.integers(1, 255)), max_size=6),
       v73=st.booleans())
def test_truncated_and_corrupt_mat_files(tmp_path, cut, flips, v73):
    path = tmp_path / "wikiData.mat"
    d = _valid_wiki(np.random.default_rng(1))
    _save_v73(path, d) if v73 else scipy.io.savemat(path, d)
    raw = bytearray(path.read_bytes())
    for where, x in flips:
        raw[int(where * len(raw))] ^= x
    path.write_bytes(bytes(raw[: max(1, int(len(raw) * (1 - cut)))]) if cut > 0.05 else bytes(raw))
    loads_or_clear_error(lambda: load_dataset("wiki", str(tmp_path)))


@FUZZ
@given(blob=st.binary(min_size=0, max_size=600))
def test_random_bytes_as_mat_files(tmp_path, blob):
    (tmp_path / "wikiData.mat").write_bytes(blob)
    assert loads_or_clear_error(lambda: load_dataset("wiki", str(tmp_path))) is None


@FUZZ
@given(lall=arrays, yall=arrays, xall=arrays, v73=st.booleans())
def test_lall_yall_loader_with_random_arrays(tmp_path, lall, yall, xall, v73):
    files = {"mirflickr25k-lall.mat": {"LAll": lall}, "mirflickr25k-yall.mat": {"YAll": yall},
             "mirflickr25k-iall-vgg.mat": {"XAll": xall}}
    try:
        for name, d in files.items():
            _save_v73(tmp_path / name, d) if v73 else scipy.io.savemat(tmp_path / name, d)
    except Exception:  # noqa: BLE001
        assume(False)
    loaded = loads_or_clear_error(lambda: load_dataset("mirflickr", str(tmp_path)))
    if loaded is not None:
        assert set(np.unique(loaded.data.labels)) <= {0, 1}


@FUZZ
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=5).map(tuple),
       dtype=st.sampled_from(["uint8", "float32", "int16"]), cut=st.floats(0, 0.9), read=st.booleans())
def test_hdf5_images_random_shapes_and_truncation(tmp_path, shape, dtype, cut, read):
    rng = np.random.default_rng(2)
    n = shape[0]
    scipy.io.savemat(tmp_path / "mirflickr25k-lall.mat", {"LAll": rng.integers(0, 2, (n, 3)) | np.eye(n, 3, dtype=int)})
    scipy.io.savemat(tmp_path / "mirflickr25k-yall.mat", {"YAll": rng.integers(0, 2, (n, 4))})
    with h5py.File(tmp_path / "mirflickr25k-iall.mat", "w") as f:
        f.create_dataset("IAll", data=rng.integers(0, 255, shape).astype(dtype))
    if cut > 0.1:
        p = tmp_path / "mirflickr25k-iall.mat"
        raw = p.read_bytes()
        p.write_bytes(raw[: int(len(raw) * (1 - cut))])

    def go():
        data = load_dataset("mirflickr", str(tmp_path)).data
        if read:
            data.image_rows(np.arange(len(data)))
        return data

    loads_or_clear_error(go)


@FUZZ
@given(caption_file=st.one_of(st.binary(max_size=200),
                              st.lists(st.tuples(st.sampled_from(["a.png", "b.png", "c.png", "missing.png", ""]),
                                                 st.text(max_size=12), st.text(max_size=8)),
                                       max_size=6).map(lambda rows: "\n".join("\t".join(r) for r in rows).encode())),
       image_bytes=st.lists(st.binary(max_size=300), min_size=3, max_size=3), good=st.booleans())
def test_folder_loader_with_bad_captions_and_images(tmp_path, caption_file, image_bytes, good):
    from PIL import Image

    for name, blob in zip(("a.png", "b.png", "c.png"), image_bytes):
        if good:
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (len(blob) % 255, 0, 0)).save(buf, format="PNG")
            blob = buf.getvalue()
        (tmp_path / name).write_bytes(blob)
    (tmp_path / "captions.tsv").write_bytes(caption_file)

    def go():
        loaded = load_dataset("folder", str(tmp_path), image_size=16)
        loaded.data.image_rows(np.arange(len(loaded.data)))
        return loaded

    loads_or_clear_error(go)


def test_encode_leaves_no_partial_output(tmp_path):
    """An encoding that dies on a corrupt image leaves no code files and no codes.json behind."""
    import torch

    from cmhash.config import build_config
    from cmhash.codes_folder import write_collection
    from cmhash.encoder import Encoder
    from conftest import make_spec

    from PIL import Image

    for i in range(6):
        Image.new("RGB", (40, 40), (i * 40, 10, 10)).save(tmp_path / f"{i}.png")
    (tmp_path / "3.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "captions.tsv").write_text("".join(f"{i}.png\tred thing number {i}\n" for i in range(6)))
    data = load_dataset("folder", str(tmp_path), image_size=32, n_query=1, n_train=5).data
    cfg = build_config("djsrh", "folder", 16, {"backbone": {"name": "alexnet", "image_size": 64, "finetune": True}})
    from cmhash.model import HashModel, build_method

    spec = make_spec(0, backbone="alexnet", image_size=64, vocab=["red", "thing", "number"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_method("djsrh", 16, spec)
    enc = Encoder(HashModel(model, cfg, spec, None, tmp_path / "none.pt", torch.device("cpu")))
    out = tmp_path / "codes"
    with pytest.raises(CmhashError, match="3.png"):
        write_collection(enc, data, out, batch_size=2, progress=False)
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


@pytest.mark.parametrize("pos, xor", [(145, 0xFF), (176, 1), (177, 0xFF)])
def test_mat_tags_that_crashed_scipy_are_clear_errors(tmp_path, pos, xor):
    """Found by the fuzz tests: these single-byte changes (the first array's class byte, its data
    type) made scipy.io.loadmat crash the process with a segmentation fault; the tag walk in
    ``matio.check_v5_structure`` now refuses them first."""
    rng = np.random.default_rng(1)
    scipy.io.savemat(tmp_path / "wikiData.mat", _valid_wiki(rng))
    raw = bytearray((tmp_path / "wikiData.mat").read_bytes())
    raw[pos] ^= xor
    (tmp_path / "wikiData.mat").write_bytes(bytes(raw))
    with pytest.raises(CmhashError, match="damaged"):
        load_dataset("wiki", str(tmp_path))


def test_more_inputs_found_by_deep_fuzzing(tmp_path):
    """A v7.3 file whose damaged key name is not UTF-8 (h5py gives bytes), and a caption file whose
    image name holds a NUL byte: both were tracebacks (TypeError, ValueError) before."""
    d = tmp_path / "a"
    d.mkdir()
    _save_v73(d / "wikiData.mat", _valid_wiki(np.random.default_rng(1)))
    raw = bytearray((d / "wikiData.mat").read_bytes())
    raw[int(0.1484375 * len(raw))] ^= 128
    (d / "wikiData.mat").write_bytes(bytes(raw))
    with pytest.raises(CmhashError, match="missing key 'I_te'"):
        load_dataset("wiki", str(d))
    (tmp_path / "captions.tsv").write_bytes(b"\x00\tred\n")
    with pytest.raises(CmhashError, match="not a usable path"):
        load_dataset("folder", str(tmp_path))
