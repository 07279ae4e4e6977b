"""Run folders protect trained models: no silent replacement, --resume only with the same method and
settings (the difference named), extending epochs allowed, checkpoints checksummed; data without
labels trains and says it cannot be scored."""
import json

import pytest
from click.testing import CliRunner

from cmhash.cli import main

SMALL = ["--set", "method.img_hidden=32", "--set", "method.txt_hidden=32", "--set", "train.batch_size=16"]


def train(root, out, *extra, method="djsrh", epochs="2"):
    args = ["train", "-m", method, "-d", "wiki", "--data-root", str(root), "-b", "16", "--epochs", epochs,
            "-o", str(out), *(SMALL if method == "djsrh" else ["--set", "train.batch_size=16"]), *extra]
    res = CliRunner().invoke(main, args)
    return res.exit_code, res.output


@pytest.fixture
def trained(wiki_like, tmp_path):
    code, out = train(wiki_like.parent, tmp_path / "R")
    assert code == 0, out
    return wiki_like.parent, tmp_path / "R"


def test_train_refuses_to_replace_a_trained_model(trained):
    root, run = trained
    before = (run / "bits-16" / "last.pt").read_bytes()
    code, out = train(root, run)
    assert code == 2 and "holds trained models (bits-16)" in out and "--overwrite" in out
    assert (run / "bits-16" / "last.pt").read_bytes() == before
    code, out = train(root, run, "--resume", "--overwrite")
    assert code == 2 and "not both" in out
    code, out = train(root, run, "--overwrite")
    assert code == 0, out
    assert (run / "bits-16" / "last.pt").read_bytes() != before  # replaced, as asked


def test_resume_with_another_method_or_settings_names_the_difference(trained):
    root, run = trained
    results = (run / "results.json").read_text()
    code, out = train(root, run, "--resume", method="dsah")
    assert code == 2 and "--resume of a djsrh 16-bit run as dsah 16-bit" in out
    code, out = train(root, run, "--resume", "--set", "method.beta=0.5")
    assert code == 2 and "other settings (method.beta: 0.3 -> 0.5)" in out, out
    code, out = train(root, run, "--resume", "--seed", "3")
    assert code == 2 and "train.seed: 0 -> 3" in out
    assert (run / "results.json").read_text() == results  # nothing written by a refused resume
    code, out = train(root, run, "--resume")  # the same settings: the finished run is read back
    assert code == 0 and (run / "results.json").exists()
    code, out = train(root, run, "--resume", epochs="4")  # more epochs: it continues
    assert code == 0, out
    assert json.loads((run / "bits-16" / "metrics.json").read_text())["epochs"] == 4


def test_damaged_checkpoints_are_errors_everywhere(trained, tmp_path):
    root, run = trained
    ck = run / "bits-16" / "last.pt"
    good = ck.read_bytes()
    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0x10  # one flipped bit in the weights
    r = CliRunner()
    for content, words in ((bytes(damaged), "checksum mismatch"), (good[: len(good) // 2], "damaged or truncated")):
        ck.write_bytes(content)
        for args in (["evaluate", str(run)], ["encode", str(run), "-o", str(tmp_path / "codes")]):
            res = r.invoke(main, args)
            assert res.exit_code == 2 and words in res.output, (args, res.output)
        code, out = train(root, run, "--resume")  # beside a metrics.json: never read back as finished
        assert code == 2 and words in out, out
    ck.write_bytes(good)
    assert r.invoke(main, ["evaluate", str(run)]).exit_code == 0


def test_sweep_refuses_to_replace_its_runs(wiki_like, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("method: djsrh\ndataset: wiki\nbits: [16]\nset: {train.epochs: 1, train.batch_size: 16, "
                    "method.img_hidden: 32, method.txt_hidden: 32}\nvariants: {a: {}}\n")
    r = CliRunner()
    args = ["sweep", str(spec), "--data-root", str(wiki_like.parent), "-o", str(tmp_path / "sw")]
    assert r.invoke(main, args).exit_code == 0
    res = r.invoke(main, args)
    assert res.exit_code == 2 and "holds trained models (a/bits-16)" in res.output and "--overwrite replaces" in res.output
    assert r.invoke(main, args + ["--resume"]).exit_code == 0
    assert r.invoke(main, args + ["--overwrite"]).exit_code == 0


@pytest.fixture
def unlabelled(tmp_path):
    from test_own_captions import write_chinese_folder

    root = write_chinese_folder(tmp_path / "photos", per_class=12)
    lines = (root / "captions.tsv").read_text(encoding="utf-8").splitlines()
    (root / "captions.tsv").write_text("\n".join(x.rsplit("\t", 1)[0] for x in lines) + "\n", encoding="utf-8")
    return root, lines


FOLDER = ["--set", "backbone.image_size=64", "--set", "backbone.workers=0", "--set", "train.batch_size=8"]


def test_a_folder_without_labels_trains_and_says_it_cannot_be_scored(unlabelled, tmp_path):
    root, _ = unlabelled
    r = CliRunner()
    cache = ["--set", f"backbone.cache_dir={tmp_path / 'cache'}"]
    res = r.invoke(main, ["train", "-d", "folder", "--data-root", str(root), "-b", "16", "--epochs", "2",
                          "-o", str(tmp_path / "run"), *FOLDER, *cache])
    assert res.exit_code == 0, res.output
    assert "not scored (no labels)" in res.output and "retrieval cannot be scored" in res.output
    assert "0.000" not in res.output
    assert json.loads((tmp_path / "run" / "results.json").read_text())["scored"] is False
    res = r.invoke(main, ["evaluate", str(tmp_path / "run")])
    assert res.exit_code == 2 and "cannot be scored" in res.output
    res = r.invoke(main, ["train", "-m", "ssah", "-d", "folder", "--data-root", str(root), "-b", "16", "--epochs",
                          "1", "-o", str(tmp_path / "s"), *FOLDER, *cache])
    assert res.exit_code == 2 and "supervised method" in res.output


def test_rows_without_labels_are_reported_by_count_and_line(unlabelled, tmp_path):
    from cmhash.data import load_dataset

    root, lines = unlabelled
    lines[3] = lines[3].rsplit("\t", 1)[0]  # no label column
    lines[7] = lines[7].rsplit("\t", 1)[0] + "\t"  # an empty one
    (root / "captions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning, match=r"2 of 36 rows have no labels \(lines 4, 8\)"):
        load_dataset("folder", str(root))


def test_caption_paths_outside_the_folder_are_refused(tmp_path):
    from PIL import Image

    from cmhash.data import load_dataset
    from cmhash.utils import CmhashError

    (tmp_path / "photos").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "in.png")
    (tmp_path / "photos" / "link.png").symlink_to(tmp_path / "outside.png")
    for name in (str(tmp_path / "outside.png"), "../outside.png", "link.png"):
        (tmp_path / "photos" / "captions.tsv").write_text(f"in.png\ta cat\n{name}\ta dog\n")
        with pytest.raises(CmhashError, match=r"captions.tsv:2: image .* lies outside the folder"):
            load_dataset("folder", str(tmp_path / "photos"))
