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
