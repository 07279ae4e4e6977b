"""Mapped generation files never kill a reader and never answer from a changed file: a file
truncated or rewritten under a live store is a clear error (a 503 from the service), damaged ivf
rows are refused at open, and an open that races a commit is tried again."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from cmhash.cli import main
from cmhash.index.store import IndexStore, StoreError
from conftest import write_codes_folder

BITS = 64


def cli(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


def queries(n=3):
    return np.random.default_rng(5).integers(0, 256, (n, BITS // 8), dtype=np.uint8)


@pytest.fixture(params=["flat", "ivf"])
def built(tmp_path, request):
    ix = tmp_path / "ix"
    assert cli("index", "build", write_codes_folder(tmp_path / "c", 3000, BITS), "-o", ix,
               "--backend", request.param, *(["--param", "approx_from=1000"] if request.param == "ivf" else []))[0] == 0
    return ix


@pytest.mark.parametrize("damage", ["truncate", "rewrite"])
def test_a_file_changed_under_a_live_store_is_an_error_not_a_crash(built, damage):
    """The reproductions: `truncate -s 100` a served generation file (SIGBUS on ivf, every result id 0
    on flat), or rewrite it in place with the same size: the next search is a StoreError."""
    st = IndexStore.open(built)
    good = st.search(queries(), 5, target="image", source="text")
    f = built / st.manifest["files"]["image"]["path"]
    if damage == "truncate":
        os.truncate(f, 100)
    else:
        raw = bytearray(f.read_bytes())
        raw[-50:] = bytes(50)
        with open(f, "r+b") as h:  # the same inode, the same size, a later modification time
            h.write(raw)
        os.utime(f, ns=(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns + 10 ** 9))
    with pytest.raises(StoreError, match="changed on disk while in use"):
        st.search(queries(), 5, target="image", source="text")
    assert st.search(queries(), 5, target="text", source="image")  # the other file is whole
    st.close()
    assert good


@pytest.mark.parametrize("backend", ["flat", "ivf"])
def test_serve_answers_503_and_lives_when_a_file_is_truncated(tiny_demo, tmp_path, backend):
    """In a real `serve` process: truncate its mapped file, query; it answers 503 naming the file and
    is still running (exit 135, "Bus error", with ivf before; every id 0 with flat)."""
    import socket
    import time

    import httpx

    out, _ = tiny_demo
    ix = tmp_path / "ix"
    assert cli("index", "build", out / "codes", "-o", ix, "--backend", backend,
               *(["--param", "approx_from=50"] if backend == "ivf" else []))[0] == 0
    st = IndexStore.open(ix)
    f = ix / st.manifest["files"]["image"]["path"]
    st.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cmhash", "serve", str(ix), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        assert httpx.get(f"{url}/search/text", params={"q": "dog"}, timeout=10).status_code == 200
        os.truncate(f, 100)
        r = httpx.get(f"{url}/search/text", params={"q": "dog"}, timeout=10)
        assert r.status_code == 503 and f.name in r.json()["error"]["message"], r.text
        assert httpx.get(f"{url}/search/text", params={"q": "dog", "same_modal": True}, timeout=10).status_code == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def test_the_service_turns_a_changed_file_into_503(built, tmp_path):
    from fastapi.testclient import TestClient

    from cmhash.service import create_app

    class Enc:  # a text query's code without a model
        fingerprint, method, text_encoder, accepts_pixels = "f00d", "test", None, False

        def query_code(self, q):
            return queries(1), {"used": [q], "unknown": [], "encoder": "test"}

    st = IndexStore.open(built)
    c = TestClient(create_app(st, Enc()))
    assert c.get("/search/text", params={"q": "x"}).status_code == 200
    os.truncate(built / st.manifest["files"]["image"]["path"], 100)
    r = c.get("/search/text", params={"q": "x"})
    assert r.status_code == 503 and "changed on disk" in r.json()["error"]["message"], r.text
    st.close()


def test_damaged_ivf_rows_are_refused_at_open(tmp_path, monkeypatch):
    """A list row past the end, on an index large enough to skip the open-time checksum: a clear
    StoreError at open (an IndexError and a 500 before)."""
    from cmhash.index.store import files as store_mod
    from cmhash.index.base import read_header

    ix = tmp_path / "ix"
    assert cli("index", "build", write_codes_folder(tmp_path / "c", 3000, BITS), "-o", ix, "--backend", "ivf",
               "--param", "approx_from=1000")[0] == 0  # trained: its lists are saved
    monkeypatch.setattr(store_mod, "VERIFY_AT_OPEN_BYTES", 0)
    st = IndexStore.open(ix)
    f = ix / st.manifest["files"]["image"]["path"]
    st.close()
    header, start = read_header(f)
    assert header["ivf"]["lists"]
    n, nb, nl = header["ntotal"], BITS // 8, header["ivf"]["n_cells"]
    rows_at = start + n * nb + 8 * n + nl * nb + 4 * n + n * nb  # codes, ids, centroids, assignments, list codes
    raw = bytearray(f.read_bytes())
    raw[rows_at:rows_at + 8] = (10 ** 12).to_bytes(8, "little")
    f.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="list row outside"):
        IndexStore.open(ix)
    code, out = cli("search", ix, "--text", "x")
    assert code != 0 and "Traceback" not in out


def test_opening_while_another_process_commits_retries(tmp_path):
    """Opens in a loop while a writer commits back to back: every open succeeds (about 1 in 4,000
    failed before, once with a raw FileNotFoundError)."""
    ix = tmp_path / "ix"
    assert cli("index", "build", write_codes_folder(tmp_path / "c", 200, BITS), "-o", ix)[0] == 0
    writer = subprocess.Popen([sys.executable, "-c", f"""
import numpy as np
from cmhash.index.store import IndexStore
st = IndexStore.open({str(ix)!r}, hold_lock=True)
rng = np.random.default_rng(0)
for i in range(150):
    st.add(rng.integers(0, 256, (1, {BITS // 8}), dtype=np.uint8), rng.integers(0, 256, (1, {BITS // 8}), dtype=np.uint8),
           ids=[10 ** 6 + i])
st.close()
"""])
    opened, errors = 0, []
    while writer.poll() is None:
        try:
            IndexStore.open(ix).close()
            opened += 1
        except StoreError as e:
            errors.append(str(e))
    assert writer.returncode == 0
    assert not errors and opened > 20, (opened, errors[:3])
    assert json.loads((ix / "manifest.json").read_text())["n_items"] == 350


def test_open_gives_up_with_one_line_after_bounded_tries(tmp_path, monkeypatch):
    """A generation that keeps moving (simulated) ends after OPEN_TRIES with a StoreError, and a
    missing file with an unchanged manifest fails at once."""
    from cmhash.index.store import store as store_mod

    ix = tmp_path / "ix"
    assert cli("index", "build", write_codes_folder(tmp_path / "c", 50, BITS), "-o", ix)[0] == 0
    calls = []

    def always_moving(path):
        calls.append(1)
        return len(calls)

    real_open = IndexStore._open.__func__

    def flaky(cls, *a):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(store_mod, "manifest_key", always_moving)
    monkeypatch.setattr(IndexStore, "_open", classmethod(flaky))
    with pytest.raises(StoreError, match="could not be read.*during 5 tries"):
        IndexStore.open(ix)
    monkeypatch.setattr(IndexStore, "_open", classmethod(real_open))
    monkeypatch.undo()
    st = IndexStore.open(ix)
    items = st.manifest["files"]["items"]["path"]
    st.close()
    os.unlink(ix / items)
    with pytest.raises(StoreError, match="missing"):
        IndexStore.open(ix)
    assert threading.active_count() >= 1
