"""The command-line edges of the second hostile test of main: codes folders are not replaced
unasked, a caption language the model cannot read is said, two trainers never share a run folder,
long queries are not echoed whole, a missing extra names its install."""
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cmhash.cli import main
from cmhash.utils import WriteLock


def run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


def test_encode_does_not_replace_codes_unasked(tiny_demo, tmp_path):
    out, _ = tiny_demo
    codes = tmp_path / "codes"
    assert run("encode", out, "-b", "16", "-o", codes, "--limit", "20")[0] == 0
    before = (codes / "image.npy").read_bytes()
    code, text = run("encode", out, "-b", "16", "-o", codes, "--limit", "30")
    assert code == 2 and "already holds encoded codes" in text and "--overwrite" in text, text
    assert (codes / "image.npy").read_bytes() == before
    code, text = run("encode", out, "-b", "16", "-o", codes, "--limit", "30", "--overwrite")
    assert code == 0, text
    assert np.load(codes / "image.npy").shape[0] == 30
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    code, text = run("encode", out, "-b", "16", "-o", tmp_path / "docs", "--limit", "5")
    assert code == 2 and "holds other files" in text
    assert [p.name for p in (tmp_path / "docs").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("bits, words", [("12", "positive multiple of 8"), ("0", "positive multiple of 8"),
                                         ("24", "no 24-bit model")])
def test_encode_bits_are_checked(tiny_demo, tmp_path, bits, words):
    out, _ = tiny_demo
    code, text = run("encode", out, "-b", bits, "-o", tmp_path / "c")
    assert code == 2 and words in text, text
    assert not (tmp_path / "c").exists()


def test_encode_says_when_captions_have_no_known_word(tiny_demo, tmp_path):
    """45 Arabic captions through a model whose bag of words holds English tags: a warning, not
    silence."""
    out, _ = tiny_demo
    photos = tmp_path / "arabic"
    photos.mkdir()
    rows = []
    for i in range(45):
        Image.fromarray(np.full((16, 16, 3), 5 * i, np.uint8)).save(photos / f"p{i}.png")
        rows.append(f"p{i}.png\tكلب صغير يلعب في الحديقة {i}")
    (photos / "captions.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="45 of 45 captions have no word the model's text encoder words knows"):
        code, text = run("encode", out, "-d", "folder", "--data-root", photos, "-o", tmp_path / "c", "--workers", "0")
    assert code == 0, text
    assert json.loads((tmp_path / "c" / "codes.json").read_text())["empty_text_rows"] == 45


def test_a_run_folder_being_trained_is_not_trained_into(wiki_like, tmp_path):
    out = tmp_path / "r"
    lock = WriteLock(out / ".train.lock").acquire()
    try:
        code, text = run("train", "-d", "wiki", "--data-root", wiki_like.parent, "-b", "16", "--epochs", "1",
                         "-o", out, "--set", "train.batch_size=16")
    finally:
        lock.release()
    assert code == 2 and "is being written by another process" in text, text
    assert not (out / "bits-16").exists()


def test_two_trainings_into_one_folder_at_once_lose_nothing(wiki_medium, tmp_path):
    """Both start together: one trains, the other stops with a clear error; the folder holds one
    whole run whose checkpoint and metrics agree."""
    import json

    from cmhash.model import load_model

    out = tmp_path / "r"
    args = [sys.executable, "-m", "cmhash", "train", "-d", "wiki", "--data-root", str(wiki_medium), "-b", "16",
            "--epochs", "3", "-o", str(out)]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    err = next(o[1] for p, o in zip(procs, outs) if p.returncode == 2)
    assert "being written by another process" in err or "holds trained models" in err, err
    m = json.loads((out / "bits-16" / "metrics.json").read_text())
    assert m["epochs"] == 3 and load_model(out, 16).bits == 16


def test_a_long_query_is_not_echoed_whole(tiny_demo):
    out, _ = tiny_demo
    query = "dog " + " ".join(f"zzword{i}" for i in range(12_000))  # about 100 KB
    code, text = run("search", out / "index", "--text", query, "-k", "3")
    assert code == 0 and len(text) < 3000, len(text)
    assert "(and 11980 more)" in text, text


def test_a_backend_without_its_extra_names_the_install(tmp_path, monkeypatch):
    from conftest import write_codes_folder

    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss-cpu were not installed
    c = write_codes_folder(tmp_path / "c", 20, 64)
    code, text = run("index", "build", c, "-o", tmp_path / "ix", "--backend", "faiss")
    assert code == 2 and "pip install 'cmhash[faiss]'" in text, text
    assert not (tmp_path / "ix").exists()


def test_a_train_that_fails_leaves_no_run_folder(tmp_path):
    code, text = run("train", "-d", "wiki", "--data-root", tmp_path / "missing", "-b", "16", "-o", tmp_path / "r")
    assert code == 2 and "not found" in text, text
    assert not (tmp_path / "r").exists()
