"""Baselines computed in the same run as the deep methods, on the same split.

- ``random_codes_metrics``: random {-1,+1} codes for every item, the floor of every table.
- ``label_prior``: the fraction of (query, database) pairs that share a label, the precision of a
  random ranking.
- The shallow cross-modal baselines, all on one CCA fitted on the training part (``CCA``):

  - **CCA-ITQ** (Gong, Lazebnik, Gordo, Perronnin, "Iterative Quantization", TPAMI 2013, sec. 5):
    centre both views, fit regularised CCA, keep the top c = min(K, r) canonical directions
    (r = min(D, d) directions exist), scale direction j by its canonical correlation to the power
    p (Gong et al. scale by eigenvalues to a power; p = 0 is plain CCA), learn the ITQ rotation
    R (c x c, 50 iterations of B = sign(VR), R = Procrustes(V, B)) on the projected training items
    of both views stacked, and code sign(VR). When K > r only r directions exist: the first r
    bits are ITQ's and the remaining K - r bits are random hyperplanes through the same scaled
    r-dimensional space (SimHash); they add little, and the table says where that happens
    (Wiki's 10-d texts give r = 10).
  - **CCA-RR**: the same c scaled directions, a random orthogonal rotation instead of ITQ's (the
    "CCA + RR" row of Gong et al.).
  - **CCA (real-valued)**: no hashing; cosine similarity in the full r-dimensional canonical
    space scaled by the correlations to the power p, the unhashed reference of the rows above.

  The ridge (``reg``, relative to each view's mean variance) and the power p are chosen on a
  validation part of the training items (10%, queries against the other 90% as database, mean
  of I->T and T->I mAP), then CCA is fitted again on the whole training part; the queries are never
  read to choose them.

An earlier version kept all r directions, whitened to equal scale, and rotated them into K bits:
each bit then mixed mostly uncorrelated directions and scored at the random-codes floor.
"""
from __future__ import annotations

import numpy as np

from ..data.protocol import validation_split
from ..models.cca import CCA, POWERS, CCAHash, chosen, grid_search
from .runner import evaluate_codes, evaluate_real

def _mean_map(metrics: dict) -> float:
    return 0.5 * (metrics["i2t"]["map"] + metrics["t2i"]["map"])


def _codes(model, x, y, query, database) -> dict:
    return {"q_img": model.encode_x(x[query]), "q_txt": model.encode_y(y[query]),
            "db_img": model.encode_x(x[database]), "db_txt": model.encode_y(y[database])}


def _real(cca: CCA, power: float, x, y, query, database) -> dict:
    return {"q_img": cca.project_x(x[query], None, power), "q_txt": cca.project_y(y[query], None, power),
            "db_img": cca.project_x(x[database], None, power), "db_txt": cca.project_y(y[database], None, power)}


def _evaluate(kind: str, cca: CCA, power: float, bits: int, x, y, labels, train, query, database, seed: int,
              **kw) -> dict:
    """One CCA row (kind ``itq``, ``random`` or ``real``) on ``cca``, its codes rotated on the
    ``train`` items, scored with ``query`` against ``database``."""
    if kind == "real":
        return evaluate_real(_real(cca, power, x, y, query, database), labels[query], labels[database], **kw)
    h = CCAHash(bits, kind, power=power, seed=seed).fit(x[train], y[train], cca)
    return evaluate_codes(_codes(h, x, y, query, database), labels[query], labels[database], **kw)


def cca_baselines(inputs, bits: list[int], kinds=("itq", "random", "real"), seed: int = 0,
                  curves: bool = False) -> dict[tuple[str, int], dict]:
    """Every CCA row at every code length, fitted on the training part of ``inputs``
    (``data.inputs.Inputs``) with reg and power chosen per row on its validation part (the choice
    is in each result's ``"selected"``), scored on the protocol: {(kind, bits): metrics}. One CCA
    fit per ridge value serves every row (real-valued CCA has no code length: its one result is
    stored at every length)."""
    s, lab = inputs.split, inputs.data.labels
    x, y = np.asarray(inputs.feat, np.float64), np.asarray(inputs.data.texts, np.float64)
    rows = [(k, b) for k in kinds for b in (bits if k != "real" else bits[:1])]
    fit, val = validation_split(np.asarray(s.train), 0.1, seed)
    fitted: dict[float, CCA] = {}  # one CCA fit per ridge serves every row

    def cca_at(reg: float) -> CCA:
        if reg not in fitted:
            fitted[reg] = CCA(reg).fit(x[fit], y[fit])
        return fitted[reg]

    best = {}
    for (kind, b) in rows:
        tried = grid_search(lambda reg: {p: _mean_map(_evaluate(kind, cca_at(reg), p, b, x, y, lab, fit, val, fit, seed,
                                                                curves=False, ndcg_k=None)) for p in POWERS})
        best[kind, b] = chosen(tried)
    out, full = {}, {}
    for (kind, b), (reg, power) in best.items():
        if reg not in full:
            full[reg] = CCA(reg).fit(x[s.train], y[s.train])
        cca = full[reg]
        m = _evaluate(kind, cca, power, b, x, y, lab, s.train, s.query, s.database, seed, curves=curves)
        m["selected"] = {"reg": reg, "power": power, "r": cca.r,
                         "directions": cca.r if kind == "real" else min(b, cca.r)}
        for length in (bits if kind == "real" else [b]):
            out[kind, length] = m
    return out


def cca_metrics(inputs, bits: int, kind: str = "itq", seed: int = 0, curves: bool = False) -> dict:
    """One CCA row (``itq``: CCA-ITQ, ``random``: CCA-RR, ``real``: real-valued CCA) at ``bits``."""
    return cca_baselines(inputs, [bits], (kind,), seed, curves)[kind, bits]


def random_codes_metrics(inputs, bits: int, seed: int = 0, curves: bool = True) -> dict:
    """The floor: random {-1,+1} codes for every item, scored on the same protocol."""
    rng = np.random.default_rng(seed)
    q, db = inputs.split.query, inputs.split.database
    codes = {k: rng.choice(np.array([-1, 1], np.int8), size=(len(ix), bits))
             for k, ix in (("q_img", q), ("q_txt", q), ("db_img", db), ("db_txt", db))}
    lab = inputs.data.labels
    return evaluate_codes(codes, lab[q], lab[db], curves=curves)


def label_prior(inputs) -> float:
    """Fraction of (query, database) pairs that share a label: what a random ranking's precision is."""
    lab = inputs.data.labels.astype(np.float32)
    q, db = lab[inputs.split.query], lab[inputs.split.database]
    return float(((q @ db.T) > 0).mean())
