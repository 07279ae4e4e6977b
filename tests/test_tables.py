"""Every results table in the README and docs is rendered from a results file under
benchmarks/results/: they agree, a changed number in a results file is caught, and a benchmark
run end to end writes a results file whose tables show the spread over seeds."""
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cmhash.cli import main
from cmhash.eval import tables

REPO = Path(__file__).resolve().parents[1]


def documents(repo: Path) -> list[str]:
    return [str(p) for p in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]]


def cmhash_tables(*args):
    return CliRunner().invoke(main, ["tables", *map(str, args)])


def test_every_table_in_the_readme_and_docs_matches_its_results_file():
    res = cmhash_tables(*documents(REPO), "--results", REPO / "benchmarks" / "results", "--check")
    assert res.exit_code == 0, res.output
    n = sum(len(tables.BLOCK.findall(Path(d).read_text(encoding="utf-8"))) for d in documents(REPO))
    assert n >= 3 and f"{n} tables, 0 differ" in res.output


def _copy(tmp_path):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    shutil.copy(REPO / "README.md", repo / "README.md")
    for d in (REPO / "docs").glob("*.md"):
        shutil.copy(d, repo / "docs" / d.name)
    shutil.copytree(REPO / "benchmarks" / "results", tmp_path / "results")
    return repo, tmp_path / "results"


def test_changing_one_number_in_a_results_file_fails_the_check(tmp_path):
    repo, results = _copy(tmp_path)
    args = [*documents(repo), "--results", results]
    assert cmhash_tables(*args, "--check").exit_code == 0
    f = results / "ucm.json"
    data = json.loads(f.read_text())
    row = next(r for r in data["sections"]["words"]["rows"] if r["bits"] == 64)
    row["i2t"]["map"] += 0.1
    f.write_text(json.dumps(data))
    res = cmhash_tables(*args, "--check")
    assert res.exit_code == 1 and "differs from its results" in res.output and "ucm.json" in res.output
    assert cmhash_tables(*args).exit_code == 0  # render ...
    assert cmhash_tables(*args, "--check").exit_code == 0  # ... and they agree again


def test_markers_name_a_results_file_that_exists(tmp_path):
    from cmhash.utils import CmhashError

    text = "<!-- table: nope.json metric=map -->\n| x |\n<!-- /table -->\n"
    with pytest.raises(CmhashError, match="does not exist"):
        tables.update_text(text, tmp_path, "doc.md")


def test_a_sweep_writes_results_that_render_with_the_spread(wiki_like, tmp_path):
    """A benchmark is a sweep spec: its results file renders with mean ± std and the CCA rows."""
    spec = tmp_path / "wiki.yaml"
    spec.write_text(f"datasets:\n  wiki: {{dataset: wiki, root: {wiki_like.parent}}}\nbits: [8]\nseeds: [0, 1]\n"
                    "baselines: true\nmetrics: [map, map@50]\nset: {train.epochs: 1}\nvariants:\n  DJSRH: {method: djsrh}\n")
    results = tmp_path / "wiki.json"
    res = CliRunner().invoke(main, ["sweep", str(spec), "-o", str(tmp_path / "runs"), "--results", str(results)])
    assert res.exit_code == 0, res.output
    rows = json.loads(results.read_text())["sections"]["wiki"]["rows"]
    names = {(r["name"], r.get("seed")) for r in rows}
    assert {("DJSRH", 0), ("DJSRH", 1), ("CCA-ITQ", 0), ("CCA-RR", 1), ("CCA (real-valued)", 0),
            ("random codes", 1)} <= names
    doc = "<!-- table: wiki.json section=wiki metric=map -->\n<!-- /table -->\n"
    text, changed = tables.update_text(doc, tmp_path, "doc.md")
    assert changed and "| DJSRH | " in text and " ± " in text and "| CCA-ITQ |" in text


@pytest.mark.parametrize("content, words", [
    (b"not json", "not JSON"), (b"", "not JSON"), (b"[1, 2]", "a JSON list"), (b'{"a": 1}', 'no "rows"'),
    (b'{"sections": {"s": {"title": "x"}}}', 'no "rows" list'), (b'{"sections": [1]}', '"sections" must be'),
    (b'{"rows": [{"name": "x", "bits": 16, "i2t": {"map": "abc"}}]}', "i2t map is 'abc'"),
    (b'{"rows": [{"name": "x", "bits": 16, "t2i": {"map": null}}]}', "t2i map is None"),
    (b'{"rows": [{"bits": 16}]}', 'needs a "name"'), (b'{"rows": [{"name": "x", "bits": "16"}]}', '"bits" must be'),
    (b"\xff\xfe{", "not UTF-8"), (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
def test_a_malformed_results_file_is_one_line(tmp_path, content, words):
    """`cmhash tables --print` and `--check` on every malformed results file: one line, exit 2 (a
    traceback each time before)."""
    f = tmp_path / "r.json"
    f.write_bytes(content)
    res = cmhash_tables("--print", f)
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and words in res.stderr and res.stderr.count("\n") == 1, res.stderr
    doc = tmp_path / "README.md"
    doc.write_text("<!-- table: r.json metric=map -->\n<!-- /table -->\n")
    res = cmhash_tables(doc, "--check", "--results", tmp_path)
    assert res.exit_code == 2 and words in res.stderr


def test_a_results_file_with_a_bom_or_missing_is_handled(tmp_path):
    f = tmp_path / "r.json"
    f.write_bytes(b'\xef\xbb\xbf{"rows": [{"name": "x", "bits": 16, "i2t": {"map": 0.5}, "t2i": {"map": 0.25}}]}')
    res = cmhash_tables("--print", f)
    assert res.exit_code == 0 and "0.500" in res.output
    for p, words in ((tmp_path / "nope.json", "not found"), (tmp_path, "is a folder")):
        res = cmhash_tables("--print", p)
        assert res.exit_code == 2 and words in res.stderr


def test_gap_table_chooses_on_validation_and_says_when_a_gap_exceeds_twice_the_spread():
    def row(name, seed, i2t, t2i, val=None):
        r = {"name": name, "bits": 16, "seed": seed, "i2t": {"map": i2t}, "t2i": {"map": t2i}}
        return {**r, "best_val": {"map": val}} if val is not None else r

    rows = [row("CCA-ITQ", s, 0.80 + d, 0.90 + d) for s, d in ((0, 0.0), (1, 0.01), (2, -0.01))]
    # A: best on the queries, worse on validation; B: chosen (validation .7 > .6), I->T +.10 (> 2 x .01),
    # T->I +.005 (within)
    rows += [row("A", s, 0.99, 0.99, 0.6) for s in (0, 1, 2)]
    rows += [row("B", s, 0.90 + d, 0.905 + d, 0.7) for s, d in ((0, 0.0), (1, 0.01), (2, -0.01))]
    got = tables.render({"sections": {"s": {"rows": rows}}}, {"kind": "gap", "sections": "s", "bits": "16"})
    line = got.splitlines()[2]
    assert "| s | 16 | B (0.700) |" in line
    assert "I→T above (+0.100, 2 std 0.020)" in line and "T→I within (+0.005, 2 std 0.020)" in line
