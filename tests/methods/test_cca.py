"""CCA-ITQ and CCA-RR as models: the same mAP as the tables' rows on the same inputs, a checkpoint
that loads and encodes like any method's, the grid widened past an edge, data without labels, and
the whole flow (train, encode, index, search) from the command line."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cmhash.cli import main
from cmhash.config import build_config
from cmhash.eval.baselines import cca_baselines
from cmhash.models.cca import CCAHash, chosen, grid_search
from cmhash.model import load_model
from cmhash.train.protocol import prepare, run_experiment
from conftest import photo_folder


def cli(*args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


@pytest.mark.parametrize("method, kind", [("cca-itq", "itq"), ("cca-rr", "random")])
def test_the_model_scores_what_the_table_row_scores(wiki_like, tmp_path, method, kind):
    cfg = build_config(method, "wiki", 16, {}, {"data": {"root": str(wiki_like.parent)}})
    _, inputs = prepare(cfg)
    rows = cca_baselines(inputs, [16, 32], (kind,))
    for bits in (16, 32):
        cfg = build_config(method, "wiki", bits, {}, {"data": {"root": str(wiki_like.parent)}})
        m = run_experiment(cfg, tmp_path / f"b{bits}", inputs=inputs, progress=False, curves=False)
        want = rows[kind, bits]
        assert m["i2t"]["map"] == pytest.approx(want["i2t"]["map"], abs=1e-9)
        assert m["t2i"]["map"] == pytest.approx(want["t2i"]["map"], abs=1e-9)
        chosen = m["best_val"]["chosen"]
        assert (chosen["reg"], chosen["power"]) == (want["selected"]["reg"], want["selected"]["power"])


def test_the_checkpoint_loads_and_encodes_like_the_fitted_hash(wiki_like, tmp_path):
    """load_model reads the two affine maps back; its codes are CCAHash's on the same training set."""
    cfg = build_config("cca-itq", "wiki", 16, {}, {"data": {"root": str(wiki_like.parent)}})
    _, inputs = prepare(cfg)
    m = run_experiment(cfg, tmp_path / "r", inputs=inputs, progress=False, curves=False)
    model = load_model(tmp_path / "r" / "last.pt", 16, "cpu")
    x, t = inputs.feat, np.asarray(inputs.data.texts, np.float32)
    tr = inputs.split.train
    h = CCAHash(16, "itq", m["best_val"]["chosen"]["reg"], m["best_val"]["chosen"]["power"]).fit(x[tr], t[tr])
    with torch.inference_mode():
        got_x = np.sign(model.encode_image(torch.from_numpy(x)).numpy())
        got_t = np.sign(model.encode_text(torch.from_numpy(t)).numpy())
    agree_x = (np.where(got_x >= 0, 1, -1) == h.encode_x(x)).mean()
    agree_t = (np.where(got_t >= 0, 1, -1) == h.encode_y(t)).mean()
    assert agree_x > 0.999 and agree_t > 0.999, (agree_x, agree_t)  # float32 inputs: a rare sign at ~0 may flip


def test_the_grid_widens_past_an_edge():
    """Scores peaking at ridge 1000 (past the grid's 10): 100, 1000 and 10000 are tried, 1000 chosen;
    a peak inside the grid tries nothing more."""
    seen = []

    def score(reg):
        seen.append(reg)
        return {p: -abs(np.log10(reg) - 3) - 0.01 * p for p in (0.0, 1.0)}

    tried = grid_search(score, (1e-3, 1e-2, 1e-1, 1.0, 10.0), max_widen=3)
    assert chosen(tried) == (1000.0, 0.0)
    assert seen[5:] == [100.0, 1000.0, 10000.0]
    seen.clear()
    grid_search(lambda reg: (seen.append(reg), {0.0: -abs(np.log10(reg))})[1], (1e-3, 1.0, 10.0))
    assert seen == [1e-3, 1.0, 10.0]
    seen.clear()
    tried = grid_search(lambda reg: (seen.append(reg), {0.0: -reg})[1], (1e-3, 1.0), max_widen=2)
    assert seen == [1e-3, 1.0, 1e-4, 1e-5] and chosen(tried)[0] == 1e-5


def test_train_encode_index_search_from_the_command_line(tmp_path):
    photos = photo_folder(tmp_path / "photos")
    run = tmp_path / "run"
    code, out = cli("train", "-m", "cca-itq", "-d", "folder", "--data-root", photos, "-b", "16", "-o", run)
    assert code == 0, out
    assert "CCA-ITQ" in (run / "results.md").read_text()
    code, out = cli("encode", run, "-b", "16", "-d", "folder", "--data-root", photos, "-o", tmp_path / "codes",
                    "--workers", "0")
    assert code == 0, out
    assert cli("index", "build", tmp_path / "codes", "-o", tmp_path / "ix")[0] == 0
    code, out = cli("search", tmp_path / "ix", "--text", "red", "-k", "5", "--json")
    assert code == 0, out
    hits = json.loads(out)["results"] if out.lstrip().startswith("{") else json.loads(out)
    assert hits


def test_data_without_labels_is_fitted_on_paired_validation(tmp_path):
    """No labels: the ridge and power are chosen by each validation image finding its own caption."""
    photos = photo_folder(tmp_path / "photos", labels=False)
    code, out = cli("train", "-m", "cca-itq", "-d", "folder", "--data-root", photos, "-b", "16", "-o", tmp_path / "r")
    assert code == 0, out
    ck = torch.load(tmp_path / "r" / "bits-16" / "last.pt", weights_only=True)
    assert ck is not None
    m = json.loads((tmp_path / "r" / "bits-16" / "metrics.json").read_text())
    assert m["scored"] is False and 0 < m["best_val"]["map"] <= 1


def test_fine_tuning_is_refused_with_a_clear_line(tmp_path):
    photos = photo_folder(tmp_path / "photos")
    code, out = cli("train", "-m", "cca-itq", "-d", "folder", "--data-root", photos, "-b", "16", "-o", tmp_path / "r",
                    "--finetune")
    assert code == 2 and "frozen image features" in out, out
