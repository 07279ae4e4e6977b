"""What a person reads: help for every option, one k limit, file names in answers, summaries
instead of dicts, a caution beside the mAP of a small query split, and one command from a folder
of photos to a searchable index that a second folder can join."""
import json

import click
from click.testing import CliRunner

from cmhash.cli import main
from cmhash.search import MAX_K
from cmhash.service import ServiceConfig
from conftest import photo_folder


def cli(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


def commands(cmd=main, path=()):
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


def test_every_option_of_every_command_has_help():
    missing = [f"{name} {p.opts[0]}" for name, cmd in commands() for p in cmd.params
               if isinstance(p, click.Option) and not p.help]
    assert not missing, missing
    for name, cmd in commands():
        assert "``" not in (cmd.help or ""), f"{name}: reStructuredText in --help"


def test_one_k_limit_for_the_cli_and_the_service():
    k = next(p for p in main.commands["search"].params if p.name == "k")
    assert k.type.max == MAX_K == ServiceConfig().max_k


def test_a_folder_becomes_a_served_index_in_one_command(tmp_path):
    """`index build --folder`: each step timed, file names in the answers, a small query split
    cautioned, readable `index info`, and `index add --folder` with the same model."""
    photos = photo_folder(tmp_path / "photos", n=60)
    more = photo_folder(tmp_path / "more", n=9)
    ix = tmp_path / "ix"
    code, out = cli("index", "build", "--folder", photos, "-o", ix, "-b", "32")
    assert code == 0, out
    for step in ("features:", "fit: cca-itq at 32 bits", "encode:", "index:", "built"):
        assert step in out, (step, out)
    assert "only 6 query items: their mAP is noise" in out, out
    assert "{'" not in out
    code, again = cli("index", "build", "--folder", photos, "-o", ix)
    assert code == 2 and "index add" in again and "--overwrite" in again
    code, out = cli("search", ix, "--text", "blue", "-k", "3")
    assert code == 0 and "p0" in out and ".png" in out and "#" not in out.split("\n", 2)[2], out
    code, out = cli("search", ix, "--text", "blue", "-k", "3", "--json")
    assert code == 0 and json.loads(out)["results"][0]["source"].endswith(".png")
    code, out = cli("index", "add", ix, "--folder", more)
    assert code == 0 and "added 9 items" in out and "now holds 69" in out, out
    code, out = cli("index", "info", ix)
    assert code == 0 and "{'" not in out and "cca-itq" in out, out
    code, out = cli("index", "build", "--folder", photos, "-o", tmp_path / "x", ix / "codes")
    assert code == 2 and "not both" in out


def test_a_text_query_to_a_cca_index_loads_no_torch(tmp_path):
    """`cmhash search --text` on a CCA-ITQ index over a bag of words answers with numpy alone (the
    model's text side, text-query.npz): the codes and results equal the full model's, torch and
    scikit-learn are never imported; a file of another model is ignored."""
    import subprocess
    import sys

    import numpy as np

    from cmhash.search import TEXT_QUERY_FILE, open_for_search, text_query_code

    photos = photo_folder(tmp_path / "photos", n=45)
    ix = tmp_path / "ix"
    assert cli("index", "build", "--folder", photos, "-o", ix, "-b", "16")[0] == 0
    export = ix / "model" / "bits-16" / TEXT_QUERY_FILE
    assert export.is_file()
    store, enc = open_for_search(ix, None, "cpu")
    store.close()
    for q in ("red", "a green square", "blue photo 7"):
        fast, words = text_query_code(ix, q)
        full, full_words = enc.query_code(q)
        assert np.array_equal(fast, full) and words == full_words, q
    probe = ("import sys\nfrom cmhash.cli import main\n"
             f"main(['search', {str(ix)!r}, '--text', 'red', '-k', '3', '--json'], standalone_mode=False)\n"
             "print('LOADED', [m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0 and "LOADED []" in r.stdout, (r.stdout, r.stderr)
    assert json.loads(r.stdout.split("LOADED")[0])["results"][0]["source"].endswith(".png")
    code, out = cli("search", ix, "--text", "zzzz")
    assert code == 2 and "none of the words" in out  # the same strict error as the model's
    z = dict(np.load(export))
    z["fingerprint"] = np.array("0" * 16)  # another model's: ignored, the model answers
    with open(export, "wb") as f:
        np.savez(f, **z)
    assert text_query_code(ix, "red") is None
    assert cli("search", ix, "--text", "red")[0] == 0
