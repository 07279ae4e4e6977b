"""Index writes are transactions: one writer at a time, all-or-nothing, killed at any point the index
holds the old or the new generation (never a mix), and the same command run again completes it."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from cmhash.cli import main
from cmhash.index.store import IndexStore, StoreError
from cmhash.utils import WriteLock
from conftest import write_codes_folder

BITS = 64


def cli(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res.exit_code, res.output


def snapshot(ix, queries) -> tuple[list[int], list]:
    """(ids, top-5 results of ``queries``) of the index; codes and metadata must hold the same ids."""
    st = IndexStore.open(ix)
    ids = np.sort(st.indexes["image"].ids).tolist()
    assert np.array_equal(np.sort(st.indexes["text"].ids), ids)
    assert sorted(st.items(ids)) == ids, "codes and item records disagree"
    res = st.search(queries, 5, target="image")
    st.close()
    return ids, res


def run_cmhash(args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cmhash", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def timed(args) -> float:
    t = time.perf_counter()
    p = run_cmhash(args)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    return time.perf_counter() - t


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """Two collections large enough that an add takes about a second: 100,000 + 100,000 items."""
    d = tmp_path_factory.mktemp("codes")
    return (write_codes_folder(d / "c1", 100_000, BITS, 0, seed=1),
            write_codes_folder(d / "c2", 100_000, BITS, 100_000, seed=2), d)


def queries():
    return np.random.default_rng(7).integers(0, 256, (4, BITS // 8), dtype=np.uint8)



def test_killed_add_leaves_old_or_new_and_the_same_command_completes_it(big, tmp_path, trials):
    c1, c2, _ = big
    q = queries()
    ix = tmp_path / "ix"
    assert cli("index", "build", c1, "-o", ix)[0] == 0
    old = snapshot(ix, q)
    ref = tmp_path / "ref"
    assert cli("index", "build", c1, "-o", ref)[0] == 0
    total = timed(["index", "add", ref, c2])
    new = snapshot(ref, q)
    assert len(new[0]) == 200_000
    start = timed(["--help"])
    seen = {"old": 0, "new": 0}
    for t, delay in enumerate(np.random.default_rng(1).uniform(start * 0.8, total, trials)):
        p = run_cmhash(["index", "add", ix, c2])
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.communicate()
        got = snapshot(ix, q)
        assert got in (old, new), f"trial {t}: killed at {delay:.2f}s, a mix of generations"
        seen["old" if got == old else "new"] += 1
        code, out = cli("index", "add", ix, c2)  # the same command completes it
        assert code == 0, out
        assert snapshot(ix, q) == new
        leftovers = [p.name for p in ix.iterdir() if p.name.endswith(".tmp")]
        assert not leftovers, leftovers
        # back to the old generation for the next trial
        assert cli("index", "remove", ix, *range(100_000, 100_010))[0] == 0
        assert cli("index", "build", c1, "-o", ix, "--overwrite")[0] == 0
    print(f"kills of index add: {seen} (old generation / new generation found)")


def test_killed_build_leaves_nothing_or_the_whole_index(big, tmp_path, trials):
    c1, c2, _ = big
    q = queries()
    ref = tmp_path / "ref"
    total = timed(["index", "build", c1, c2, "-o", ref])
    new = snapshot(ref, q)
    prev = tmp_path / "prev"  # an index that --overwrite replaces
    assert cli("index", "build", c1, "-o", prev)[0] == 0
    old = snapshot(prev, q)
    start = timed(["--help"])
    seen = {"no index": 0, "old": 0, "new": 0}
    for t, delay in enumerate(np.random.default_rng(2).uniform(start * 0.8, total, trials)):
        fresh = tmp_path / f"fresh{t}"
        for ix, args, before in ((fresh, [], None), (prev, ["--overwrite"], old)):
            p = run_cmhash(["index", "build", c1, c2, "-o", ix, *args])
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.communicate()
            if (ix / "manifest.json").exists():
                got = snapshot(ix, q)
                assert got in ((before, new) if before else (new,)), f"trial {t}: a partial index"
                seen["new" if got == new else "old"] += 1
            else:
                seen["no index"] += 1
                assert before is None
                code, out = cli("index", "info", ix)
                assert code == 2 and ("not an index folder" in out or "does not exist" in out), out
            code, out = cli("index", "build", c1, c2, "-o", ix, *args)  # the same command completes it
            assert code == 0, out
            assert snapshot(ix, q) == new
        assert cli("index", "build", c1, "-o", prev, "--overwrite")[0] == 0
    print(f"kills of index build (fresh and --overwrite): {seen}")


def test_two_writers_at_once_both_land(tmp_path):
    c1 = write_codes_folder(tmp_path / "c1", 2000, BITS, 0, seed=1)
    c2 = write_codes_folder(tmp_path / "c2", 30_000, BITS, 10_000, seed=2)
    c3 = write_codes_folder(tmp_path / "c3", 30_000, BITS, 50_000, seed=3)
    ix = tmp_path / "ix"
    assert cli("index", "build", c1, "-o", ix)[0] == 0
    a, b = run_cmhash(["index", "add", ix, c2]), run_cmhash(["index", "add", ix, c3])
    outs = [p.communicate(timeout=300) for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    ids, _ = snapshot(ix, queries())
    assert ids == list(range(2000)) + list(range(10_000, 40_000)) + list(range(50_000, 80_000))


def test_a_second_writer_waits_then_fails_clearly(tmp_path):
    c1 = write_codes_folder(tmp_path / "c1", 100, BITS, 0)
    c2 = write_codes_folder(tmp_path / "c2", 100, BITS, 100, seed=2)
    ix = tmp_path / "ix"
    assert cli("index", "build", c1, "-o", ix)[0] == 0
    lock = WriteLock(ix / ".write.lock").acquire()
    try:
        code, out = cli("index", "add", ix, c2, "--wait", "0.3")
        assert code == 2 and "being written by another process" in out and f"pid {os.getpid()}" in out
        code, out = cli("index", "remove", ix, "3", "--wait", "0")
        assert code == 2 and "being written" in out
        threading.Timer(0.5, lock.release).start()
        code, out = cli("index", "add", ix, c2, "--wait", "30")  # waits for it, then lands
        assert code == 0 and "waiting for another writer" in out and "now holds 200" in out, out
    finally:
        lock.release()


def test_a_store_opened_before_another_writer_committed_refuses_to_commit(tmp_path):
    c1 = write_codes_folder(tmp_path / "c1", 50, BITS, 0)
    ix = tmp_path / "ix"
    assert cli("index", "build", c1, "-o", ix)[0] == 0
    a, b = IndexStore.open(ix), IndexStore.open(ix)
    a.remove([1])
    with pytest.raises(StoreError, match="another writer committed generation 2"):
        b.remove([2])
    assert IndexStore.open(ix).ntotal == 49


def test_overwrite_checks_every_input_before_replacing(tmp_path):
    c1 = write_codes_folder(tmp_path / "c1", 300, BITS, 0)
    other = write_codes_folder(tmp_path / "c32", 50, 32, 1000)
    model = write_codes_folder(tmp_path / "cm", 50, BITS, 2000, fingerprint="beef")
    dup = write_codes_folder(tmp_path / "cd", 50, BITS, 100)
    ix = tmp_path / "ix"
    assert cli("index", "build", c1, "-o", ix)[0] == 0
    before = snapshot(ix, queries())
    for bad, words in ((other, "32-bit codes"), (model, "encoded by model beef"), (dup, "id 100 is also in"),
                       (c1, "given twice")):
        code, out = cli("index", "build", c1, bad, "-o", ix, "--overwrite")
        assert code == 2 and words in out, out
        assert snapshot(ix, queries()) == before  # the previous index is intact
        fresh = tmp_path / f"new-{bad.name}"
        code, out = cli("index", "build", c1, bad, "-o", fresh)
        assert code == 2 and not (fresh / "manifest.json").exists()  # a failed build leaves no partial index
        if bad is not c1:
            code, out = cli("index", "add", ix, bad)
            assert code == 2 and snapshot(ix, queries()) == before, out
    code, out = cli("index", "build", c1, "-o", ix)
    assert code == 0 and "already built from these folders" in out  # the same build again: complete


def test_damaged_codes_folders_are_clear_errors(tmp_path):
    ix = tmp_path / "ix"
    assert cli("index", "build", write_codes_folder(tmp_path / "ok", 20, BITS), "-o", ix)[0] == 0
    cases = {
        "missing": (lambda f: (f / "items.jsonl").unlink(), "items.jsonl: missing"),
        "cut": (lambda f: (f / "items.jsonl").write_bytes((f / "items.jsonl").read_bytes()[:-9]), "cut short"),
        "short": (lambda f: (f / "items.jsonl").write_text(
            "".join((f / "items.jsonl").read_text().splitlines(True)[:5])), "5 records, codes.json says 20"),
        "binary": (lambda f: (f / "items.jsonl").write_bytes(b"\xff\xfe\x00junk\n" * 20), "not UTF-8"),
        "noid": (lambda f: (f / "items.jsonl").write_text('{"caption": "x"}\n' * 20), "integer id"),
        "repeat": (lambda f: (f / "items.jsonl").write_text('{"id": 3}\n' * 20), "id 3 repeats"),
        "absolute": (lambda f: (f / "items.jsonl").write_text(
            "".join(json.dumps({"id": i, "source": "/etc/passwd"}) + "\n" for i in range(20))), "inside the collection"),
        "parent": (lambda f: (f / "items.jsonl").write_text(
            "".join(json.dumps({"id": i, "source": "../../x.png"}) + "\n" for i in range(20))), "inside the collection"),
        "manifest": (lambda f: (f / "codes.json").write_text('{"format": "cmhash-codes-v2"}'), "damaged ('n'"),
        "npy": (lambda f: (f / "text.npy").write_bytes(b"\x93NUMPY"), "unreadable or truncated"),
    }
    for name, (damage, words) in cases.items():
        f = write_codes_folder(tmp_path / name, 20, BITS, 100)
        damage(f)
        for args in (("index", "build", f, "-o", tmp_path / f"ix-{name}"), ("index", "add", ix, f)):
            code, out = cli(*args)
            assert code == 2 and words in out and "Traceback" not in out, (name, out)


def test_index_remove(tmp_path):
    ix = tmp_path / "ix"
    assert cli("index", "build", write_codes_folder(tmp_path / "c", 100, BITS), "-o", ix)[0] == 0
    (tmp_path / "ids.txt").write_text("10 11\n12,13\n")
    code, out = cli("index", "remove", ix, "1", "2,3", "5000", "--ids-file", tmp_path / "ids.txt")
    assert code == 0 and "removed 7 items (1 of the ids given were not in the index)" in out, out
    ids, _ = snapshot(ix, queries())
    assert len(ids) == 93 and not {1, 2, 3, 10, 11, 12, 13} & set(ids)
    for bad, words in (("abc", "not an item id"), ("1,-4", "2^63"), ("99999999999999999999", "2^63")):
        code, out = cli("index", "remove", ix, bad)
        assert code == 2 and words in out, out
    code, out = cli("index", "remove", ix)
    assert code == 2 and "give the ids" in out
    assert cli("index", "add", ix, tmp_path / "c")[0] == 0  # removed items can come back
    assert len(snapshot(ix, queries())[0]) == 100


def test_a_served_index_follows_a_writer_without_errors(tmp_path):
    from fastapi.testclient import TestClient

    from cmhash.service import create_app

    class Enc:  # the service needs an encoder only for queries; these tests search by id and health
        fingerprint, method, text_encoder, accepts_pixels = "f00d", "test", None, False

    c1 = write_codes_folder(tmp_path / "c1", 5000, BITS, 0)
    c2 = write_codes_folder(tmp_path / "c2", 5000, BITS, 5000, seed=2)
    ix = tmp_path / "ix"
    assert cli("index", "build", c1, "-o", ix)[0] == 0
    app = create_app(IndexStore.open(ix), Enc())
    statuses = []
    with TestClient(app) as c:
        assert c.get("/health").json()["items"] == 5000
        writer = run_cmhash(["index", "add", ix, c2])
        while writer.poll() is None:
            statuses += [c.get("/items/10").status_code, c.get("/health").status_code]
        out = writer.communicate()
        assert writer.returncode == 0, out
        for _ in range(200):
            h = c.get("/health").json()
            if h["items"] == 10_000:
                break
            time.sleep(0.05)
        assert h["items"] == 10_000 and h["generation"] == 2
        assert c.get("/items/7000").json()["caption"] == "item 7000"
        writer = run_cmhash(["index", "remove", ix, "7000"])
        while writer.poll() is None:
            statuses.append(c.get("/items/10").status_code)
        writer.communicate()
        for _ in range(200):
            if c.get("/items/7000").status_code == 404:
                break
            time.sleep(0.05)
        assert c.get("/items/7000").status_code == 404 and c.get("/health").json()["items"] == 9999
    assert set(statuses) == {200}, sorted(set(statuses))


@pytest.mark.parametrize("damage", ["truncated", "random", "header"])
def test_a_damaged_items_database_is_the_damaged_error(tmp_path, damage):
    """An items-*.sqlite cut short, overwritten with random bytes or with its header flipped: `index
    info` and `search` say "damaged" (size or checksum, checked before the database is opened)."""
    ix = tmp_path / "ix"
    assert cli("index", "build", write_codes_folder(tmp_path / "c", 50, BITS), "-o", ix)[0] == 0
    db = next(ix.glob("items-g*.sqlite"))
    raw = bytearray(db.read_bytes())
    if damage == "truncated":
        raw = raw[:len(raw) // 2]
    elif damage == "random":
        raw = bytearray(np.random.default_rng(0).integers(0, 256, len(raw), dtype=np.uint8).tobytes())
    else:
        raw[:16] = b"not an sqlite db"
    db.write_bytes(bytes(raw))
    code, out = cli("index", "info", ix)
    assert code == 2 and "Traceback" not in out and str(db.name) in out, out
    assert ("truncated" in out) if damage == "truncated" else ("damaged" in out), out
    with pytest.raises(StoreError):
        IndexStore.open(ix)
    # the same file, also passing the size and checksum checks (a manifest rewritten to match): still clear
    m = json.loads((ix / "manifest.json").read_text())
    from cmhash.index.store import sha256_file

    m["files"]["items"].update(bytes=db.stat().st_size, sha256=sha256_file(db))
    (ix / "manifest.json").write_text(json.dumps(m))
    if damage != "truncated":
        with pytest.raises(StoreError, match="damaged"):
            IndexStore.open(ix)


def test_a_failed_build_leaves_no_folder_behind(tmp_path):
    c = write_codes_folder(tmp_path / "c", 20, BITS)
    code, out = cli("index", "build", c, "-o", tmp_path / "ix", "--backend", "milvus", "--param", "index_type=NOPE")
    assert code == 2 and not (tmp_path / "ix").exists(), out
    (tmp_path / "given").mkdir()
    code, out = cli("index", "build", c, "-o", tmp_path / "given", "--backend", "mih", "--param", "m=0")
    assert code == 2 and list((tmp_path / "given").iterdir()) == [], out


def test_a_rerun_after_a_killed_remove_cleans_the_old_generation(tmp_path):
    """A remove killed after its commit but before it deleted the previous generation: running it
    again removes nothing more, and the stale files go."""
    ix = tmp_path / "ix"
    assert cli("index", "build", write_codes_folder(tmp_path / "c", 50, BITS), "-o", ix)[0] == 0
    old = sorted(p.name for p in ix.glob("*-g000001.*"))
    saved = {n: (ix / n).read_bytes() for n in old}
    assert cli("index", "remove", ix, "3")[0] == 0
    for n, b in saved.items():  # as if the writer had died before deleting them
        (ix / n).write_bytes(b)
    code, out = cli("index", "remove", ix, "3")
    assert code == 0 and "removed 0 items" in out, out
    assert not any((ix / n).exists() for n in old)
    assert len(snapshot(ix, queries())[0]) == 49


def test_health_drops_a_reload_error_once_the_store_is_whole_again(tmp_path):
    """A writer's damaged generation is reported by /health; when the index on disk is whole again,
    the error goes."""
    from fastapi.testclient import TestClient

    from cmhash.service import ServiceConfig, create_app

    class Enc:
        fingerprint, method, text_encoder, accepts_pixels = "f00d", "test", None, False

    ix = tmp_path / "ix"
    assert cli("index", "build", write_codes_folder(tmp_path / "c1", 50, BITS), "-o", ix)[0] == 0
    good = (ix / "manifest.json").read_text()
    app = create_app(IndexStore.open(ix), Enc(), ServiceConfig(reload_retry_s=0.0))
    with TestClient(app) as c:
        m = json.loads(good)
        m["generation"] = 7  # a generation whose files are not there
        m["files"]["image"]["path"] = "image-g000007.cmhidx"
        (ix / "manifest.json").write_text(json.dumps(m))
        for _ in range(200):
            h = c.get("/health").json()
            if h["reload_error"]:
                break
            time.sleep(0.02)
        assert h["reload_error"] and h["generation"] == 1, h
        (ix / "manifest.json").write_text(good)  # whole again
        for _ in range(200):
            h = c.get("/health").json()
            if h["reload_error"] is None:
                break
            time.sleep(0.02)
        assert h["reload_error"] is None and h["items"] == 50, h


@pytest.mark.parametrize("backend", ["flat", "ivf"])
def test_a_store_maps_its_files_and_checks_sizes_at_every_open(tmp_path, monkeypatch, backend):
    """Opening maps the index files (nothing read whole): answers equal an in-memory index's; a
    change copies the mapping and leaves the generation file as it was. A large generation (the
    threshold lowered here) is not checksummed at open, only sized: a flipped bit passes the open
    and `index info --verify` finds it; a truncated file fails every open."""
    from cmhash.index.store import files as store_mod

    ix = tmp_path / "ix"
    assert cli("index", "build", write_codes_folder(tmp_path / "c", 3000, BITS), "-o", ix,
               "--backend", backend)[0] == 0
    st = IndexStore.open(ix)
    image = st.indexes["image"]
    assert isinstance(image.codes, np.memmap) and st.verified
    q = queries()
    mem = image.__class__(BITS)
    mem.add(np.array(image.codes), np.array(image.ids))
    for exact in (True, False) if backend == "ivf" else (True,):
        opts = {"exact": exact} if backend == "ivf" else {}
        got, want = image.search(q, 10, **opts), mem.search(q, 10, **opts)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    f = ix / st.manifest["files"]["image"]["path"]
    before = f.read_bytes()
    st.add(np.zeros((1, BITS // 8), np.uint8), np.zeros((1, BITS // 8), np.uint8), ids=[10 ** 9], commit=False)
    assert image.ntotal == 3001 and f.read_bytes() == before
    st.close()

    monkeypatch.setattr(store_mod, "VERIFY_AT_OPEN_BYTES", 0)
    raw = bytearray(before)
    raw[-3] ^= 0x40  # an id's bit
    f.write_bytes(bytes(raw))
    st = IndexStore.open(ix)
    assert not st.verified
    st.close()
    code, out = cli("index", "info", ix)
    assert code == 0 and "not read at open" in out, out
    code, out = cli("index", "info", ix, "--verify")
    assert code == 2 and "checksum mismatch" in out, out
    f.write_bytes(before[:-8])
    with pytest.raises(StoreError, match="truncated"):
        IndexStore.open(ix)
