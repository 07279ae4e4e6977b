"""The one grid runner (``train.grid``): several datasets x points x code lengths x seeds into one
layout that ``cmhash evaluate`` reads, one results format, rows kept from a results file, and
validation-only scoring."""
import json

import pytest
from click.testing import CliRunner

from cmhash.cli import main
from cmhash.eval.report import read_results

from conftest import write_wiki_like

SPEC = """title: tiny grid
datasets:
  a: {{dataset: wiki, root: {a}}}
  b: {{dataset: wiki, root: {b}}}
  gone: {{dataset: wiki, root: {gone}}}
bits: [8, 16]
seeds: [0, 1]
seeds_at: {{16: [0]}}
baselines: true
metrics: [map, map@50]
set: {{method.img_hidden: 16, method.txt_hidden: 16, train.epochs: 2, train.eval_every: 1}}
score: {score}
variants:
  DJSRH: {{method: djsrh}}
  small DSAH: {{method: dsah}}
"""


@pytest.fixture
def grid(tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        (tmp_path / name).mkdir()
        write_wiki_like(tmp_path / name, 64, 16, classes=3, seed=seed)

    def write(score="queries"):
        spec = tmp_path / f"grid-{score}.yaml"
        spec.write_text(SPEC.format(a=tmp_path / "a", b=tmp_path / "b", gone=tmp_path / "gone", score=score))
        return spec
    return write


def sweep(*args):
    res = CliRunner().invoke(main, ["sweep", *map(str, args)])
    assert res.exit_code == 0, res.output
    return res.output


def test_every_run_folder_a_sweep_writes_is_read_by_cmhash_evaluate(grid, tmp_path):
    out, results = tmp_path / "out", tmp_path / "published.json"
    text = sweep(grid(), "-o", out, "--results", results)
    assert "gone: skipped" in text
    runs = sorted(p.parent for p in out.glob("**/bits-*"))
    # 2 datasets x 2 points x (2 seeds at 8 bits + 1 at 16): the layout of checkpoint.sweep_run_dir
    assert len({p for p in out.glob("**/bits-*")}) == 2 * 2 * 3
    assert (out / "a" / "DJSRH" / "seed-1" / "bits-8" / "metrics.json").exists()
    for run in sorted(set(runs)):
        res = CliRunner().invoke(main, ["evaluate", str(run)])
        assert res.exit_code == 0, (run, res.output)
        for bits_folder in run.glob("bits-*"):
            m = json.loads((bits_folder / "metrics.json").read_text())
            # the same split (found above the run folder), the same model: the same scores
            assert f"{m['i2t']['map']:.3f}" in res.output, (run, res.output)
    published = read_results(results)
    assert set(published["sections"]) == {"a", "b"}
    rows = published["sections"]["a"]["rows"]
    assert {(r["name"], r["bits"], r["seed"]) for r in rows if r["name"] == "DJSRH"} == {
        ("DJSRH", 8, 0), ("DJSRH", 8, 1), ("DJSRH", 16, 0)}
    assert {"CCA-ITQ", "random codes"} <= {r["name"] for r in rows}
    assert (out / "a" / "results.json").exists() and "## tiny grid" in (out / "results.md").read_text()


def test_a_results_file_keeps_its_rows_and_collect_trains_nothing(grid, tmp_path):
    out, results = tmp_path / "out", tmp_path / "published.json"
    sweep(grid(), "-o", out, "--results", results)
    before = read_results(results)
    # the run folders are gone (another machine trained them): the results file's rows stand
    moved = tmp_path / "elsewhere"
    out.rename(moved)
    sweep(grid(), "-o", out, "--results", results, "--collect")
    assert not list(out.glob("**/bits-*"))  # nothing trained
    after = read_results(results)
    key = lambda s: sorted((r["name"], r["bits"], r.get("seed"), r["i2t"]["map"]) for r in s["rows"])  # noqa: E731
    assert key(after["sections"]["a"]) == key(before["sections"]["a"])


def test_validation_scoring_never_encodes_the_queries(grid, tmp_path, monkeypatch):
    import cmhash.train.protocol as protocol

    def no_queries(*a, **k):
        raise AssertionError("the queries were encoded")

    monkeypatch.setattr(protocol, "encode_split", no_queries)
    out = tmp_path / "val"
    text = sweep(grid("validation"), "-o", out, "--results", tmp_path / "val.json")
    assert "validation mAP@50" in text
    m = json.loads((out / "a" / "DJSRH" / "seed-0" / "bits-8" / "metrics.json").read_text())
    assert m["scored"] is False and "validation" in m["note"] and m["best_val"]["map@50"] >= 0
    rows = read_results(tmp_path / "val.json")["sections"]["a"]["rows"]
    assert {r["name"] for r in rows} == {"DJSRH", "small DSAH"}  # no baselines: nothing scored on queries
    assert all(0 <= r["score"] <= 1 for r in rows)


def test_two_processes_share_one_sweep(grid, tmp_path):
    """Two `cmhash sweep --resume` into one folder at once: each run is trained by one of them (its
    folder locked while it trains) and read back by the other; both end with the same tables."""
    import subprocess
    import sys

    spec, out = grid(), tmp_path / "shared"
    cmd = [sys.executable, "-m", "cmhash", "sweep", str(spec), "-o", str(out), "--resume"]
    procs = [subprocess.Popen(cmd + ["--results", str(tmp_path / f"r{i}.json")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(list(out.glob("**/bits-*/metrics.json"))) == 2 * 2 * 3  # every run once
    rows = [sorted((r["name"], r["bits"], r.get("seed"), r["i2t"]["map"]) for r in
                   read_results(tmp_path / f"r{i}.json")["sections"]["a"]["rows"]) for i in range(2)]
    assert rows[0] == rows[1] and len(rows[0]) > 6


def test_points_trains_only_the_named_points_and_reads_the_others_back(grid, tmp_path):
    out = tmp_path / "out"
    sweep(grid(), "-o", out, "--points", "small DSAH", "-b", "8", "--seeds", "0")
    assert sorted(p.parent.parent.name for p in out.glob("a/*/seed-*/bits-*")) == ["small-DSAH"]
    sweep(grid(), "-o", out, "--resume", "--points", "DJSRH", "-b", "8", "--seeds", "0")  # the DSAH runs kept
    assert sorted(p.parent.parent.name for p in out.glob("a/*/seed-*/bits-*")) == ["DJSRH", "small-DSAH"]
    res = CliRunner().invoke(main, ["sweep", str(grid()), "-o", str(out), "--resume", "--points", "JDSH"])
    assert res.exit_code != 0 and "no point named 'JDSH'" in res.output and "small DSAH" in res.output
