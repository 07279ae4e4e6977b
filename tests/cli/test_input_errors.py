"""Every bad input of the hostile test is a clear error (exit 2, a message naming the problem, no
traceback), and nothing is written by a command that fails."""
import pytest
from click.testing import CliRunner

from cmhash.cli import main


def run(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in res.output
    return res.exit_code, res.output


@pytest.mark.parametrize("setting, words", [
    ("train.epochs=abc", "train.epochs: expected int, got 'abc'"),
    ("train.epochs=2.5", "train.epochs: expected int, got 2.5"),
    ("method.beta=abc", "method.beta: expected float, got 'abc'"),
    ("train.seed=abc", "train.seed: expected int, got 'abc'"),
    ("train.eval_every=0", "train.eval_every must be at least 1, got 0"),
    ("train.batch_size=-3", "train.batch_size must be at least 1"),
    ("train.val_fraction=1.5", "train.val_fraction must be in [0, 1)"),
    ("data.options={a: [}", "data.options: expected dict"),
    ("data.options={bogus: 1}", "unknown wiki dataset parameter(s) ['bogus']"),
])
def test_bad_train_settings(wiki_like, tmp_path, setting, words):
    code, out = run("train", "-d", "wiki", "--data-root", wiki_like.parent, "-b", "16", "--epochs", "1",
                    "-o", tmp_path / "r", "--set", setting)
    assert code == 2 and words in out, out
    assert not (tmp_path / "r" / "bits-16").exists()


def test_bad_devices(wiki_like, tmp_path):
    for device, words in (("tpu", "unknown device 'tpu'"), ("meta", "not supported")):
        code, out = run("train", "-d", "wiki", "--data-root", wiki_like.parent, "-b", "16", "--epochs", "1",
                        "-o", tmp_path / "r", "--device", device)
        assert code == 2 and words in out, out


def test_repeated_code_lengths_train_once(wiki_like, tmp_path):
    code, out = run("train", "-d", "wiki", "--data-root", wiki_like.parent, "-b", "16,16", "--epochs", "1",
                    "-o", tmp_path / "r", "--set", "train.batch_size=16")
    assert code == 0 and out.count("DJSRH, 16 bits:") == 1, out


def test_encode_errors(tiny_demo, wiki_like, tmp_path):
    out, _ = tiny_demo
    cases = [
        (["--data-option", "bogus=1"], "unknown synthetic dataset parameter(s) ['bogus']"),
        (["--limit", "0"], "0 is not in the range x>=1"),
        (["-d", "wiki", "--data-root", wiki_like.parent], "gives 12-d image features, but this djsrh model reads "
                                                          "images through efficientnet-lite0"),
        (["--device", "tpu"], "unknown device"),
    ]
    for args, words in cases:
        code, text = run("encode", out, "-b", "16", "-o", tmp_path / "c", *args)
        assert code == 2 and words in text, (args, text)
        assert not (tmp_path / "c").exists()


def test_backend_parameter_errors(tmp_path):
    from conftest import write_codes_folder

    c = write_codes_folder(tmp_path / "c", 30, 64)
    for args, words in ((["--backend", "mih", "--param", "m=0"], "mih backend: m must be between 1 and"),
                        (["--param", "zzz=1"], "unknown flat backend parameter(s) ['zzz']"),
                        (["--backend", "mih", "--param", "m=abc"], "expected int"),
                        (["--param", "noequals"], "key=value")):
        code, out = run("index", "build", c, "-o", tmp_path / "ix", *args)
        assert code == 2 and words in out, (args, out)
        assert not (tmp_path / "ix" / "manifest.json").exists()


def test_sweep_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    for content, words in ((b"title: \xff\xfe\n", "not UTF-8 text (byte 7)"), (b"method: [\n", "not valid YAML"),
                           (b"- a\n- b\n", "must be a mapping")):
        bad.write_bytes(content)
        code, out = run("sweep", bad)
        assert code == 2 and words in out, out
