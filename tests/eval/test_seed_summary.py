"""Rows of several training seeds: mean ± sample std per name and code length, and the table cells."""
import pytest

from cmhash.eval.runner import markdown_table, seed_summary


def row(name, bits, seed, m_i2t, m_t2i, **extra):
    return {"name": name, "bits": bits, "seed": seed, "best_epoch": seed + 3, "i2t": {"map": m_i2t},
            "t2i": {"map": m_t2i}, **extra}


def test_mean_and_sample_std_per_name_and_length():
    rows = [row("A", 16, 0, 0.5, 0.6, param="x", value=1), row("A", 16, 1, 0.7, 0.6, param="x", value=1),
            row("A", 16, 2, 0.6, 0.6, param="x", value=1), row("A", 64, 0, 0.9, 0.8), row("B", 16, 0, 0.1, 0.2)]
    got = {(r["name"], r["bits"]): r for r in seed_summary(rows)}
    a = got["A", 16]
    assert a["seeds"] == [0, 1, 2] and a["i2t"]["map"] == pytest.approx(0.6)
    assert a["i2t_std"]["map"] == pytest.approx(0.1)  # sqrt(((-.1)^2 + .1^2 + 0) / 2)
    assert a["t2i_std"]["map"] == pytest.approx(0.0)
    assert (a["param"], a["value"]) == ("x", 1) and "best_epoch" not in a  # per-run keys dropped
    assert got["A", 64]["seeds"] == [0] and got["A", 64]["i2t_std"]["map"] == 0.0


def test_table_cells_show_the_spread_and_mark_single_seeds():
    rows = [row("A", 16, 0, 0.5, 0.6), row("A", 16, 1, 0.7, 0.6), row("A", 64, 0, 0.9, 0.8)]
    text = markdown_table(rows, ("map",))
    assert "| A | 0.600 ± 0.141 | 0.900* | 0.600 ± 0.000 | 0.800* |" in text
    assert "* one seed" in text
    plain = markdown_table([{"name": "A", "bits": 16, "i2t": {"map": 0.5}, "t2i": {"map": 0.6}}], ("map",))
    assert "| A | 0.500 | 0.600 |" in plain and "±" not in plain and "*" not in plain
