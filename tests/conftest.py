import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

# the tests' feature cache: one folder for the session, never the user's own cache
os.environ.setdefault("CMHASH_CACHE_DIR", tempfile.mkdtemp(prefix="cmhash-test-cache-"))

SHARED = Path(os.environ.get("CMHASH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_file(*parts) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p


def write_wiki_like(folder, n_train, n_test, classes=4, img_dim=12, txt_dim=5, noise=0.5, seed=0):
    """A Wiki-format file whose features carry the class, so training has something to learn."""
    rng = np.random.default_rng(seed)
    centres_i, centres_t = rng.normal(size=(classes, img_dim)), rng.normal(size=(classes, txt_dim))

    def part(n):
        y = rng.integers(0, classes, n)
        return (np.abs(centres_i[y] + noise * rng.normal(size=(n, img_dim))),
                np.abs(centres_t[y] + noise * rng.normal(size=(n, txt_dim))), (y + 1)[:, None])

    i_tr, t_tr, l_tr = part(n_train)
    i_te, t_te, l_te = part(n_test)
    path = folder / "wikiData.mat"
    scipy.io.savemat(path, dict(I_tr=i_tr, I_te=i_te, T_tr=t_tr, T_te=t_te, L_tr=l_tr, L_te=l_te))
    return path


@pytest.fixture
def wiki_like(tmp_path):
    """160 training and 40 test pairs, 4 classes."""
    return write_wiki_like(tmp_path, 160, 40)


@pytest.fixture
def wiki_medium(tmp_path):
    """2,000 training pairs (about 60 steps an epoch), so training takes a few seconds."""
    write_wiki_like(tmp_path, 2000, 100, classes=5, img_dim=40, txt_dim=20, noise=0.7, seed=1)
    return tmp_path


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """`cmhash demo` on 200 items, 16 bits, 2 epochs: a trained model, its codes and an index. The tags
    are read as a bag of words (``--text-encoder words``: a text encoder that knows only the tags,
    and distinct codes after 2 epochs); ``test_cli_demo_small`` runs the default, MiniLM."""
    from click.testing import CliRunner

    from cmhash.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo"
    res = CliRunner().invoke(main, ["demo", "-o", str(out), "--n-items", "200", "-b", "16", "--epochs", "2",
                                    "--text-encoder", "words"])
    assert res.exit_code == 0, res.output
    return out, res.output


def make_spec(img_dim=0, txt_dim=0, n_labels=0, map_channels=0, backbone=None, image_size=None, vocab=None):
    """An ``InputSpec`` for unit tests: feature vectors (default), conv maps (``map_channels``) or
    pixels through ``backbone`` (a registered name)."""
    from cmhash.spec import ImageSpec, InputSpec, TextSpec

    if backbone:
        image = ImageSpec("pixels", dim=img_dim, backbone=backbone, image_size=image_size)
    elif map_channels:
        image = ImageSpec("maps", dim=img_dim or map_channels, map_channels=map_channels, map_size=[4, 4])
    else:
        image = ImageSpec("features", dim=img_dim)
    text = (TextSpec("encoder", len(vocab), "words", {"analyzer": "words", "vocab": list(vocab)}) if vocab
            else TextSpec("vectors", txt_dim))
    return InputSpec(image, text, n_labels)


def method_on_dims(name, bits, img_dim, txt_dim, params=None, backbone=None, map_channels=0, n_labels=0):
    """A registered method on a spec made from plain dimensions (the unit tests' shorthand)."""
    from cmhash.model import build_method as build

    return build(name, bits, make_spec(img_dim, txt_dim, n_labels, map_channels, backbone), params)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="kill tests with at least 20 trials each (a few in the default run)")


@pytest.fixture
def trials(request):
    """How many random kill points a kill test tries: 3, or 20 with --runslow."""
    return 20 if request.config.getoption("--runslow") else 3


def write_codes_folder(folder, n, bits=64, id_start=0, seed=0, fingerprint="f00d", root=None, captions=True):
    """A folder in `cmhash encode`'s format with random codes (no model needed): index tests."""
    import json

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("image", "text"):
        np.save(folder / f"{name}.npy", rng.integers(0, 256, (n, bits // 8), dtype=np.uint8))
    with open(folder / "items.jsonl", "w") as f:
        for i in range(n):
            it = {"id": id_start + i, "labels": [f"c{(id_start + i) % 3}"]}
            if captions:
                it["caption"] = f"item {id_start + i}"
            f.write(json.dumps(it) + "\n")
    meta = {"format": "cmhash-codes-v2", "bits": bits, "n": n, "model": {"fingerprint": fingerprint},
            "spec": {"image": {"mode": "features", "dim": 4}, "text": {"kind": "vectors", "dim": 4}},
            "root": str(root) if root else None, "label_names": ["c0", "c1", "c2"], "dataset": "test"}
    (folder / "codes.json").write_text(json.dumps(meta))
    return folder


# per method, settings that make its networks small enough for a unit test (every method listed; the
# one place they are defined); the supervised ones still learn 4 classes from 160 items in 30 epochs
def small_params(method: str) -> dict:
    """The method's own small settings (``HashMethod.small``): a run of a few hundred items in a second."""
    from cmhash.registry import METHODS

    return dict(METHODS.get(method).small)



def _free_port() -> int:
    """A loopback port the kernel hands out as free (its ephemeral range: two test runs get two)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def milvus_config(base: Path):
    """The embedded Milvus server's configuration with every port it opens assigned from the kernel's
    free ports. The `milvus` package probes its own ports from fixed defaults (19530, ...), but its
    embedded etcd listens on etcd's fixed 2379 and 2380 whatever it probes, so two test runs on one
    host collided ("Milvus not started in 180 seconds"). Here etcd gets a configuration file
    (Milvus's ``etcd.config.path``) naming its client and peer ports, and every other ``*_port``
    setting of the package's template is given a port."""
    import milvus
    from milvus import MilvusServerConfig

    data = Path(milvus.__file__).parent / "data"
    client, peer = f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"
    etcd = base / "etcd.yaml"
    etcd.write_text(f"name: default\ndata-dir: {base / 'data' / 'etcd.data'}\nlisten-client-urls: {client}\n"
                    f"advertise-client-urls: {client}\nlisten-peer-urls: {peer}\n"
                    f"initial-advertise-peer-urls: {peer}\ninitial-cluster: default={peer}\n")
    template = (data / "config.yaml.template").read_text()
    anchor = "  use:\n    embed: true"
    assert anchor in template, "the milvus package's template changed: place etcd.config.path again"
    (base / "template.yaml").write_text(template.replace(anchor, f"  config:\n    path: {etcd}\n{anchor}"))
    config = MilvusServerConfig(template=str(base / "template.yaml"), data_dir=str(base))
    config.glog_conf_file = str(data / "glog.conf")  # set only when the package's own template is used
    ports = {k: _free_port() for k in config.configurable_items if k.endswith("_port")}
    ports["etcd_port"] = int(client.rsplit(":", 1)[1])
    config.update(**ports)
    return config


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A real Milvus server (the `milvus` package's embedded Milvus 2.3.5 standalone) on free loopback
    ports for the whole session; its URI. Skipped when the package is missing, except where
    CMHASH_REQUIRE_MILVUS_SERVER=1 (CI), where that is a failure."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from milvus import MilvusServer
    except ImportError:
        if os.environ.get("CMHASH_REQUIRE_MILVUS_SERVER") == "1":
            pytest.fail("the milvus package (embedded Milvus server) is not installed: pip install -e '.[test]'")
        pytest.skip("the milvus package (embedded Milvus server) is not installed")
    server = MilvusServer(milvus_config(tmp_path_factory.mktemp("milvus-server")))
    server.webservice_port = _free_port()  # its metrics port, probed upward from here
    server.start()
    try:
        yield f"http://{server.server_address}:{server.listen_port}"
    finally:
        server.stop()


def photo_folder(root, n=60, labels=True):
    """Photos of 3 colours with captions naming them (a learnable pairing)."""
    root.mkdir()
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
    rows = []
    for i in range(n):
        name = list(colours)[i % 3]
        arr = np.clip(np.array(colours[name]) + rng.normal(0, 25, (48, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / f"p{i:03d}.png")
        rows.append(f"p{i:03d}.png\ta {name} square photo {i}" + (f"\t{name}" if labels else ""))
    (root / "captions.tsv").write_text("\n".join(rows) + "\n")
    return root
