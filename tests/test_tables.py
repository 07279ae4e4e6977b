"""Every results table in the README and docs is rendered from a results file under
benchmarks/results/: they agree, a changed number in a results file is caught, and a benchmark
run end to end writes a results file whose tables show the spread over seeds."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import tables  # noqa: E402


def test_every_table_in_the_readme_and_docs_matches_its_results_file(capsys):
    assert tables.main(["--check"]) == 0, capsys.readouterr().out
    n = sum(len(tables.BLOCK.findall(d.read_text(encoding="utf-8"))) for d in tables.documents())
    assert n >= 3  # the README's and the UCM tables at least


def _copy(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    shutil.copy(REPO / "README.md", repo / "README.md")
    for d in (REPO / "docs").glob("*.md"):
        shutil.copy(d, repo / "docs" / d.name)
    shutil.copytree(REPO / "benchmarks" / "results", tmp_path / "results")
    return repo, tmp_path / "results"


def test_changing_one_number_in_a_results_file_fails_the_check(tmp_path, capsys):
    repo, results = _copy(tmp_path)
    args = ["--check", "--repo", str(repo), "--results", str(results)]
    assert tables.main(args) == 0
    f = results / "ucm.json"
    data = json.loads(f.read_text())
    row = next(r for r in data["sections"]["words"]["rows"] if r["bits"] == 64)
    row["i2t"]["map"] += 0.1
    f.write_text(json.dumps(data))
    capsys.readouterr()
    assert tables.main(args) == 1
    out = capsys.readouterr().out
    assert "differs from its results" in out and "ucm.json" in out
    assert tables.main(["--repo", str(repo), "--results", str(results)]) == 0  # render ...
    assert tables.main(args) == 0  # ... and they agree again


def test_markers_name_a_results_file_that_exists(tmp_path):
    from cmhash.utils import CmhashError

    text = "<!-- table: nope.json metric=map -->\n| x |\n<!-- /table -->\n"
    with pytest.raises(CmhashError, match="does not exist"):
        tables.update_text(text, tmp_path, "doc.md")


def test_a_benchmark_run_writes_results_that_render_with_the_spread(wiki_like, tmp_path):
    results = tmp_path / "wiki.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_wiki.py"), "--data", str(wiki_like.parent),
           "--methods", "djsrh", "--bits", "8", "--seeds", "0,1", "--epochs", "1", "--out", str(tmp_path / "runs"),
           "--results", str(results)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(results.read_text())["sections"]["wiki"]["rows"]
    names = {(r["name"], r.get("seed")) for r in rows}
    assert {("DJSRH", 0), ("DJSRH", 1), ("CCA-ITQ", 0), ("CCA-RR", 1), ("CCA (real-valued)", 0),
            ("random codes", 1)} <= names
    doc = "<!-- table: wiki.json section=wiki metric=map -->\n<!-- /table -->\n"
    text, changed = tables.update_text(doc, tmp_path, "doc.md")
    assert changed and "| DJSRH | " in text and " ± " in text and "| CCA-ITQ |" in text


def test_the_dsprh_path_runs_its_spec_and_reuses_stored_rows(wiki_like, tmp_path):
    spec = tmp_path / "path.yaml"
    spec.write_text("method: dsprh\nbits: [8]\nseeds: [0, 1]\nvariants:\n  '0 DSAH': {method: dsah, train.epochs: 1}\n"
                    "  '1 frame': &f {train.epochs: 1, method.feat_dim: 16, method.txt_hidden: 16, method.enc_dim: 0,\n"
                    "                 method.recon: linear, method.align: dsah, method.beta: 0, method.gamma: 0}\n"
                    "  '2 DSPRH': {method: dsprh}\n  '3 DSPRH before': {method.rank_form: softmax}\n")
    # a stored DSPRH row at its preset stands in for row 2 (no run trained for it)
    stored = tmp_path / "stored.json"
    row = {"name": "DSPRH", "bits": 8, "i2t": {"map": 0.5, "map@50": 0.6}, "t2i": {"map": 0.4, "map@50": 0.5}}
    stored.write_text(json.dumps({"sections": {"wiki": {"rows": [dict(row, seed=0), dict(row, seed=1)]}}}))
    results = tmp_path / "path.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_dsprh.py"), "--path", "--spec", str(spec), "--datasets",
           "wiki", "--wiki", str(wiki_like.parent), "--out", str(tmp_path / "runs"), "--results", str(results),
           "--reuse", f"{stored}:wiki@wiki", "--reuse", f"{stored}:wiki@wiki/3=DSPRH", "--threads", "1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(results.read_text())["sections"]["wiki"]["rows"]
    assert sorted((r["name"], r["seed"]) for r in rows) == [(n, s) for n in ("0 DSAH", "1 frame", "2 DSPRH", "3 DSPRH before")
                                                            for s in (0, 1)]
    for name in ("2 DSPRH", "3 DSPRH before"):  # stood in for by the stored rows: nothing trained for them
        assert [r["i2t"]["map"] for r in rows if r["name"] == name] == [0.5, 0.5]
    assert not list((tmp_path / "runs" / "wiki").glob("[23]-dsprh*/**/metrics.json"))
    frame = [r for r in rows if r["name"] == "1 frame"]
    assert all(r["method"] == "dsprh" for r in frame)


@pytest.mark.parametrize("content, words", [
    (b"not json", "not JSON"), (b"", "not JSON"), (b"[1, 2]", "a JSON list"), (b'{"a": 1}', 'no "rows"'),
    (b'{"sections": {"s": {"title": "x"}}}', 'no "rows" list'), (b'{"sections": [1]}', '"sections" must be'),
    (b'{"rows": [{"name": "x", "bits": 16, "i2t": {"map": "abc"}}]}', "i2t map is 'abc'"),
    (b'{"rows": [{"name": "x", "bits": 16, "t2i": {"map": null}}]}', "t2i map is None"),
    (b'{"rows": [{"bits": 16}]}', 'needs a "name"'), (b'{"rows": [{"name": "x", "bits": "16"}]}', '"bits" must be'),
    (b"\xff\xfe{", "not UTF-8"), (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_a_malformed_results_file_is_one_line(tmp_path, capsys, content, words):
    """`tables.py --print` and `--check` on every malformed results file: one line, exit 2 (a
    traceback each time before)."""
    import tables

    f = tmp_path / "r.json"
    f.write_bytes(content)
    assert tables.main(["--print", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1, err
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("<!-- table: r.json metric=map -->\n<!-- /table -->\n")
    assert tables.main(["--check", "--repo", str(tmp_path), "--results", str(tmp_path)]) == 2
    assert words in capsys.readouterr().err


def test_a_results_file_with_a_bom_or_missing_is_handled(tmp_path, capsys):
    import tables

    f = tmp_path / "r.json"
    f.write_bytes(b'\xef\xbb\xbf{"rows": [{"name": "x", "bits": 16, "i2t": {"map": 0.5}, "t2i": {"map": 0.25}}]}')
    assert tables.main(["--print", str(f)]) == 0 and "0.500" in capsys.readouterr().out
    for p, words in ((tmp_path / "nope.json", "not found"), (tmp_path, "is a folder")):
        assert tables.main(["--print", str(p)]) == 2 and words in capsys.readouterr().err
