"""Sweeps: spec parsing and its errors, a sweep run end to end (table, plot, resume)."""
import json

import pytest

from cmhash.utils import CmhashError


def test_sweep_spec_parsing_and_errors(tmp_path):
    from cmhash.train.sweep import builtin_specs, load_spec

    assert {"dsprh-loss-ablation", "dsprh-fusion", "dsprh-sensitivity", "compare-128"} <= set(builtin_specs())
    abl = load_spec("dsprh-loss-ablation")
    assert [p.name for p in abl.points] == ["full loss", "w/o alignment", "w/o cosine triplet", "w/o pairwise"]
    assert abl.points[1].overrides == {"method.alpha": 0} and abl.bits == [16, 32, 64, 128]
    fus = load_spec("dsprh-fusion")
    for p in fus.points:
        w1, w2, w3 = (p.overrides[f"method.w{i}"] for i in (1, 2, 3))
        assert w1 == w2 and w1 + w2 + w3 == pytest.approx(1.0)
    sens = load_spec("dsprh-sensitivity")
    assert {p.param for p in sens.points} == {"method.alpha", "method.beta", "method.gamma"}
    grid = load_spec({"method": "djsrh", "grid": {"method.beta": [0.3, 0.9], "method.eta": [0.1]}})
    assert len(grid.points) == 2 and grid.points[0].overrides == {"method.beta": 0.3, "method.eta": 0.1}
    cmp_ = load_spec("compare-128")
    assert [p.method for p in cmp_.points] == ["djsrh", "dsah", "dsprh"]
    for bad, msg in [({"variants": {"a": {}}, "grid": {"method.x": [1]}}, "exactly one"),
                     ({"variants": {"a": {"alpha": 1}}}, "must be one of data.X"),
                     ({"grid": {"method.x": []}}, "non-empty list"),
                     ({"bits": [0], "variants": {"a": {}}}, "positive multiple of 8"),
                     ({"variantz": {}}, "unknown sweep key")]:
        with pytest.raises(CmhashError, match=msg):
            load_spec(bad)
    with pytest.raises(CmhashError, match="no such sweep"):
        load_spec(str(tmp_path / "missing.yaml"))


def test_cli_sweep_runs_writes_table_and_plot_and_resumes(wiki_like, tmp_path):
    from click.testing import CliRunner

    from cmhash.cli import main

    spec = tmp_path / "s.yaml"
    spec.write_text("title: tiny\nmethod: djsrh\ndataset: wiki\nbits: [8]\ncurves: true\n"
                    "set: {method.img_hidden: 32, method.txt_hidden: 32, train.epochs: 2}\n"
                    "variants:\n  base: {}\n  dsah: {method: dsah, method.img_hidden: 32, method.txt_hidden: 32}\n")
    out = tmp_path / "sw"
    r = CliRunner()
    res = r.invoke(main, ["sweep", str(spec), "-o", str(out), "--data-root", str(wiki_like.parent)])
    assert res.exit_code == 0, res.output
    assert "| base |" in res.output and "| dsah |" in res.output
    assert (out / "sweep.png").stat().st_size > 1000 and (out / "curves-8bits.png").exists()
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["name"] for r in rows] == ["base", "dsah"]
    stamp = (out / "base" / "bits-8" / "metrics.json").stat().st_mtime_ns
    res = r.invoke(main, ["sweep", str(spec), "-o", str(out), "--data-root", str(wiki_like.parent), "--resume"])
    assert res.exit_code == 0 and (out / "base" / "bits-8" / "metrics.json").stat().st_mtime_ns == stamp
    res = r.invoke(main, ["sweep", "--list"])
    assert "dsprh-loss-ablation" in res.output
    res = r.invoke(main, ["sweep", "nope"])
    assert res.exit_code == 2 and "no such sweep" in res.output


def test_sweep_over_seeds_keeps_every_seed_and_the_spread(wiki_like, tmp_path):
    from click.testing import CliRunner

    from cmhash.cli import main
    from cmhash.train.sweep import load_spec

    spec = tmp_path / "s.yaml"
    spec.write_text("title: seeds\nmethod: djsrh\ndataset: wiki\nbits: [8]\n"
                    "set: {method.img_hidden: 16, method.txt_hidden: 16, train.epochs: 1}\nvariants:\n  base: {}\n")
    out = tmp_path / "sw"
    res = CliRunner().invoke(main, ["sweep", str(spec), "-o", str(out), "--data-root", str(wiki_like.parent),
                                    "--seeds", "0,1,2"])
    assert res.exit_code == 0, res.output
    assert "x 3 seeds" in res.output and " ± " in res.output
    for s in (0, 1, 2):
        assert (out / "base" / f"seed-{s}" / "bits-8" / "metrics.json").exists()
    got = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in got["rows"]] == [0, 1, 2] and got["seeds"] == [0, 1, 2]
    (summary,) = got["summary"]
    maps = [r["i2t"]["map"] for r in got["rows"]]
    assert summary["seeds"] == [0, 1, 2] and summary["i2t"]["map"] == pytest.approx(sum(maps) / 3)
    mean = sum(maps) / 3
    assert summary["i2t_std"]["map"] == pytest.approx((sum((m - mean) ** 2 for m in maps) / 2) ** 0.5)
    assert len(set(maps)) > 1  # the seeds differ
    assert load_spec({"method": "djsrh", "seeds": "3,4", "variants": {"a": {}}}).seeds == [3, 4]
    for bad in ("0,0", "a", [-1]):
        with pytest.raises(CmhashError, match="seeds"):
            load_spec({"method": "djsrh", "seeds": bad, "variants": {"a": {}}})
