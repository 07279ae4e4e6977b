"""Encoder, store, CLI (encode / index / search) and the HTTP API, end to end on the tiny demo."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cmhash import kernels
from cmhash.cli import main
from cmhash.search import open_for_search
from cmhash.codes_folder import read_codes
from cmhash.encoder import Encoder
from cmhash.eval.hamming import pack_codes
from cmhash.index.store import IndexStore, StoreError
from cmhash.service import ServiceConfig, create_app


def test_demo_ends_at_a_servable_index(tiny_demo):
    out, output = tiny_demo
    assert f"cmhash serve {out / 'index'}" in output
    store = IndexStore.open(out / "index", bits=16)
    assert store.ntotal == 200 and store.manifest["backend"] == "flat"
    assert (out / "codes" / "images" / "0.png").exists()
    store.close()


def test_encoder_codes_equal_the_trainers(tiny_demo):
    """Codes written by `encode` equal what evaluation encodes for the same items."""
    from cmhash.data.inputs import prepare_inputs
    from cmhash.model import encode_items as encode

    out, _ = tiny_demo
    enc = Encoder.load(out, 16)
    inputs = prepare_inputs(enc.cfg)
    rows = np.arange(200)
    c = read_codes(out / "codes")
    np.testing.assert_array_equal(np.asarray(c["text"]), pack_codes(encode(enc.model.net, inputs, rows, "text", "cpu")))
    np.testing.assert_array_equal(np.asarray(c["image"]), pack_codes(encode(enc.model.net, inputs, rows, "image", "cpu")))
    # pixels through the backbone give the cached-feature codes (up to float rounding of a bit or two)
    pix = enc.pixel_codes(inputs.data.image_rows(rows[:20]))
    assert (pack_codes(pix) != np.asarray(c["image"][:20])).mean() < 0.05


def test_cli_encode_build_add_info_search(tiny_demo, tmp_path):
    out, _ = tiny_demo
    r = CliRunner()
    res = r.invoke(main, ["encode", str(out), "-b", "16", "-o", str(tmp_path / "c1"), "--limit", "120",
                          "--batch-size", "32"])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["encode", str(out), "-o", str(tmp_path / "c2"), "--limit", "50", "--id-start", "1000"])
    assert res.exit_code == 0, res.output
    for backend in ("flat", "mih", "faiss", "milvus"):
        ix = tmp_path / f"ix-{backend}"
        res = r.invoke(main, ["index", "build", str(tmp_path / "c1"), "-o", str(ix), "--backend", backend])
        assert res.exit_code == 0, res.output
        res = r.invoke(main, ["index", "add", str(ix), str(tmp_path / "c2")])
        assert res.exit_code == 0 and "now holds 170" in res.output, res.output
        res = r.invoke(main, ["index", "info", str(ix), "--json"])
        info = json.loads(res.output)
        assert info["items"] == 170 and info["bits"] == 16 and info["backend"] == backend
        res = r.invoke(main, ["search", str(ix), "--text", "dog puppy pet", "-k", "7", "--json"])
        assert res.exit_code == 0, res.output
        hits = json.loads(res.output)["results"]
        assert len(hits) == 7 and [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
        if backend == "flat":
            ref = hits
        assert hits == ref  # every backend returns the same items in the same order
    res = r.invoke(main, ["search", str(tmp_path / "ix-flat"), "--image", str(out / "codes" / "images" / "3.png"),
                          "-k", "5", "--same-modal"])
    assert res.exit_code == 0 and "image -> image" in res.output, res.output
    assert " id 3 " in res.output.splitlines()[1] or "d=0" in res.output.splitlines()[1]
    # errors
    res = r.invoke(main, ["index", "add", str(tmp_path / "ix-flat"), str(tmp_path / "c2")])  # again: nothing to do
    assert res.exit_code == 0 and "added 0 items (50 were already there" in res.output, res.output
    res = r.invoke(main, ["encode", str(out), "-o", str(tmp_path / "c4"), "--limit", "60", "--id-start", "950"])
    res = r.invoke(main, ["index", "add", str(tmp_path / "ix-flat"), str(tmp_path / "c4")])  # ids 1000.. other codes
    assert res.exit_code == 2 and "already in the index" in res.output and "with other codes" in res.output
    res = r.invoke(main, ["search", str(tmp_path / "ix-flat")])
    assert res.exit_code == 2 and "exactly one of --text or --image" in res.output
    res = r.invoke(main, ["search", str(tmp_path / "ix-flat"), "--text", "☃ ☂"])  # no word at all
    assert res.exit_code == 2 and "known to this model's text encoder words" in res.output
    res = r.invoke(main, ["index", "build", str(tmp_path / "c1"), "-o", str(tmp_path / "ix-flat")])
    assert res.exit_code == 2 and "already exists" in res.output
    (tmp_path / "c3").mkdir()
    res = r.invoke(main, ["index", "build", str(tmp_path / "c3"), "-o", str(tmp_path / "ix3")])
    assert res.exit_code == 2 and "did not finish" in res.output


def _small_store(tmp_path, backend="flat"):
    rng = np.random.default_rng(0)
    img, txt = rng.choice([-1, 1], (30, 32)), rng.choice([-1, 1], (30, 32))
    store = IndexStore.create(tmp_path / "s", 32, backend, model={"fingerprint": "abc"})
    store.add(img[:20], txt[:20], [{"id": i, "caption": f"item {i}", "labels": ["x"]} for i in range(20)])
    return store, img, txt


def test_store_round_trip_and_remove(tmp_path):
    store, img, txt = _small_store(tmp_path)
    hits = store.search(txt[:2], 5, target="image")
    assert hits[0][0]["caption"].startswith("item") and "distance" in hits[0][0]
    assert store.remove([0, 1]) == 2
    store.add(img[20:], txt[20:])  # ids continue after the largest: 20..29
    back = IndexStore.open(tmp_path / "s", bits=32, fingerprint="abc")
    assert back.ntotal == 28 and back.items([0]) == {} and back.items([3])[3]["caption"] == "item 3"
    assert back.search(txt[:3], 9, target="image") == store.search(txt[:3], 9, target="image")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == \
        [".write.lock", "image-g000004.cmhidx", "items-g000004.sqlite", "manifest.json", "text-g000004.cmhidx"]


def test_store_mismatches_and_damage_are_clear_errors(tmp_path):
    store, img, txt = _small_store(tmp_path)
    with pytest.raises(StoreError, match="32-bit codes; this model makes 64-bit"):
        IndexStore.open(tmp_path / "s", bits=64)
    with pytest.raises(StoreError, match="built with model abc"):
        IndexStore.open(tmp_path / "s", fingerprint="def")
    with pytest.raises(StoreError, match="already exists"):
        IndexStore.create(tmp_path / "s", 32)
    with pytest.raises(StoreError, match="not an index folder"):
        IndexStore.open(tmp_path)
    f = tmp_path / "s" / store.manifest["files"]["image"]["path"]
    raw = f.read_bytes()
    f.write_bytes(raw[:-8])
    with pytest.raises(StoreError, match="truncated"):
        IndexStore.open(tmp_path / "s")
    f.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(StoreError, match="checksum"):
        IndexStore.open(tmp_path / "s")
    f.write_bytes(raw)
    (tmp_path / "s" / "manifest.json").write_text("{ half")
    with pytest.raises(StoreError, match="not valid JSON"):
        IndexStore.open(tmp_path / "s")


def test_crash_mid_commit_leaves_the_previous_index(tmp_path, monkeypatch):
    """New files written, manifest never replaced: the previous generation is what opens; the
    leftovers go at the next commit."""
    import cmhash.index.store.store as st

    store, img, txt = _small_store(tmp_path)
    before = store.search(txt[:4], 6, target="image")

    def crash(path, obj):
        raise OSError("killed")

    monkeypatch.setattr(st, "write_json_atomic", crash)
    with pytest.raises(OSError):
        store.add(img[20:], txt[20:])
    monkeypatch.undo()
    back = IndexStore.open(tmp_path / "s")
    assert back.ntotal == 20 and back.search(txt[:4], 6, target="image") == before
    back.add(img[20:22], txt[20:22])
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == [".write.lock", "image-g000003.cmhidx", "items-g000003.sqlite", "manifest.json", "text-g000003.cmhidx"]


@pytest.fixture(scope="module")
def client(tiny_demo):
    out, _ = tiny_demo
    store, enc = open_for_search(out / "index", None, "cpu")
    yield TestClient(create_app(store, enc, ServiceConfig(max_k=50, max_upload=200_000))), out
    store.close()


def test_api_searches(client):
    c, out = client
    h = c.get("/health").json()
    assert h["status"] == "ok" and h["items"] == 200 and h["bits"] == 16
    assert h["text_queries"] and h["text_encoder"] == "words"  # a bag of words fitted on the demo's tags
    r = c.get("/search/text", params={"q": "dog pet zzyzx", "k": 8})
    assert r.status_code == 200
    body = r.json()
    assert body["target"] == "image" and len(body["results"]) == 8 and body["known_words"] == ["dog", "pet"]
    assert body["unknown_words"] == ["zzyzx"] and body["text_encoder"] == "words"
    assert body["search"] == "exact"  # a flat store: every direction exact (an ivf one: tests/index/test_ivf.py)
    d = [x["distance"] for x in body["results"]]
    assert d == sorted(d)
    png = (out / "codes" / "images" / "11.png").read_bytes()
    r = c.post("/search/image", params={"k": 5, "same_modal": True}, files={"file": ("11.png", png, "image/png")})
    assert r.status_code == 200 and r.json()["target"] == "image"
    assert r.json()["results"][0]["distance"] <= 1
    r = c.post("/search/image", files={"file": ("11.png", png, "image/png")})
    assert r.json()["target"] == "text"
    item = c.get("/items/11").json()
    assert item["id"] == 11 and item["caption"] and item["labels"]
    r = c.get("/items/11/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    assert "<title>cmhash search</title>" in c.get("/").text


@pytest.mark.parametrize("params, status, words", [
    ({"q": "", "k": 3}, 422, "empty"),
    ({"q": "   "}, 422, "empty"),
    ({"q": "dog", "k": 0}, 422, "between 1 and 50"),
    ({"q": "dog", "k": 51}, 422, "between 1 and 50"),
    ({"q": "dog", "k": "ten"}, 422, "valid integer"),
    ({}, 422, "q: Field required"),
    ({"q": "x" * 1001}, 422, "at most 1000"),
    ({"q": "☃ ☂"}, 400, "known to this model's text encoder"),
])
def test_api_validates_text_queries(client, params, status, words):
    c, _ = client
    r = c.get("/search/text", params=params)
    assert r.status_code == status
    assert r.json()["error"]["status"] == status and words in r.json()["error"]["message"]


def test_api_validates_uploads(client):
    c, _ = client
    cases = [
        ({"file": ("a.txt", b"hello", "text/plain")}, 415, "unsupported type"),
        ({"file": ("a.png", b"not an image at all", "image/png")}, 400, "not a readable image"),
        ({"file": ("a.png", b"", "image/png")}, 422, "empty"),
        ({"file": ("a.png", b"\x89PNG" + b"0" * 300_000, "image/png")}, 413, "too large"),
        ({}, 422, "file: Field required"),
    ]
    for files, status, words in cases:
        r = c.post("/search/image", files=files) if files else c.post("/search/image")
        assert r.status_code == status, (files, r.text)
        assert words in r.json()["error"]["message"]
        assert "BytesIO" not in r.text and "object at 0x" not in r.text, r.text
    assert c.get("/items/99999").status_code == 404
    assert c.get("/items/99999").json()["error"]["message"] == "no item 99999"
    for bad in ("abc", "-1", "99999999999999999999", "1e3", "9223372036854775808"):  # every bad id is a 404
        assert c.get(f"/items/{bad}").status_code == 404 and c.get(f"/items/{bad}/image").status_code == 404
    assert c.get("/nope").json()["error"]["status"] == 404


def test_search_with_another_model_is_refused(tiny_demo, tmp_path):
    out, _ = tiny_demo
    other = tmp_path / "other.pt"
    from cmhash.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(out / "bits-16" / "last.pt")
    key = next(iter(ck["best_model"]))
    ck["best_model"][key] = ck["best_model"][key] + 1
    save_checkpoint(other, {k: v for k, v in ck.items() if k != "format"})
    res = CliRunner().invoke(main, ["search", str(out / "index"), "--text", "dog", "--model", str(other)])
    assert res.exit_code == 2 and "codes of different models are not comparable" in res.output
    shutil.copy(out / "bits-16" / "last.pt", tmp_path / "same.pt")
    res = CliRunner().invoke(main, ["search", str(out / "index"), "--text", "dog", "--model", str(tmp_path / "same.pt")])
    assert res.exit_code == 0, res.output


def test_ivf_store_answers_cross_modal_queries_approximately(tiny_demo, tmp_path):
    """An ivf store planned approximate for cross-modal directions: the service follows the plan,
    says so, and its distances are still the true ones."""
    out, _ = tiny_demo
    res = CliRunner().invoke(main, ["index", "build", str(out / "codes"), "-o", str(tmp_path / "ix"), "--backend", "ivf",
                                    "--param", "approx_from=1", "--param", "nlist=8"])
    assert res.exit_code == 0, res.output
    store, enc = open_for_search(tmp_path / "ix", None, "cpu")
    c = TestClient(create_app(store, enc, ServiceConfig(max_k=50)))
    body = c.get("/search/text", params={"q": "dog puppy pet", "k": 10}).json()
    assert body["search"] == "approx" and len(body["results"]) == 10
    same = c.get("/search/text", params={"q": "dog puppy pet", "k": 10, "same_modal": True}).json()
    assert same["search"] == "exact"
    q = pack_codes(enc.text_codes(["dog puppy pet"]))  # (1, 2) packed
    ids = [h["id"] for h in body["results"]]
    true = kernels.dists(store.indexes["image"].reconstruct(ids), q)[0]
    assert [h["distance"] for h in body["results"]] == true.tolist()
    store.close()
