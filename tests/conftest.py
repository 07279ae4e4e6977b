import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

SHARED = Path(os.environ.get("CMHASH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shared_file(*parts) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p


@pytest.fixture
def wiki_like(tmp_path):
    """A tiny Wiki-format file whose features carry the class, so training has something to learn."""
    rng = np.random.default_rng(0)
    centres_i, centres_t = rng.normal(size=(4, 12)), rng.normal(size=(4, 5))

    def part(n):
        y = rng.integers(0, 4, n)
        return (np.abs(centres_i[y] + 0.5 * rng.normal(size=(n, 12))), np.abs(centres_t[y] + 0.5 * rng.normal(size=(n, 5))),
                (y + 1)[:, None])

    i_tr, t_tr, l_tr = part(160)
    i_te, t_te, l_te = part(40)
    path = tmp_path / "wikiData.mat"
    scipy.io.savemat(path, dict(I_tr=i_tr, I_te=i_te, T_tr=t_tr, T_te=t_te, L_tr=l_tr, L_te=l_te))
    return path


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """`cmhash demo` on 200 items, 16 bits, 2 epochs: a trained model, its codes and an index."""
    from click.testing import CliRunner

    from cmhash.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo"
    res = CliRunner().invoke(main, ["demo", "-o", str(out), "--n-items", "200", "-b", "16", "--epochs", "2"])
    assert res.exit_code == 0, res.output
    return out, res.output
