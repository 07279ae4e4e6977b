"""What a deep method's similarity targets are computed from (``train.targets``).

``features`` (the papers): the frozen image features F_I and the text vectors T, whose cosines
make S_I and S_T (DJSRH Eq. 3-5, DSAH, JDSH Eq. 1-3, DGCPN, DSPRH Eq. 12).

``canonical`` (docs/deep-vs-linear.md, regime (b)): the same formulas over the items' coordinates
in CCA's canonical space, i.e. the projections a CCA-ITQ model rotates and signs (Gong et al.,
TPAMI 2013, sec. 5). The deep method then starts from what the linear answer knows (which
captions go with which images, along the directions the two views share) instead of from raw
cosines, where unrelated dimensions of F_I and T weigh as much as shared ones. A method without
a similarity target (UCCH) starts its memory bank from the canonical codes instead of random signs.

The canonical space is fitted on the training items the deep model trains on, never on the
validation part: its ridge and its power (``models.cca``) are chosen by the cosine mAP of the
validation items against the training items (without labels: each validation image's own caption
as its one relevant text), as the CCA-ITQ row chooses them. ``train.canonical_dims`` directions
are kept (0: the code length, the directions a CCA-ITQ model of that length signs).
"""
from __future__ import annotations

import numpy as np

from ..eval.metrics import cosine_retrieval
from ..models.cca import CCA, POWERS, REGS, chosen, grid_search


def canonical_space(feat: np.ndarray, text: np.ndarray, labels: np.ndarray | None, train_idx: np.ndarray,
                    val_idx: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Every item's image and text in the canonical space fitted on ``train_idx``: (N, c) and (N, c),
    c = min(dims, rank), and what was chosen on ``val_idx``."""
    x, t = np.asarray(feat, np.float64), np.asarray(text, np.float64)
    fit, val = np.asarray(train_idx), np.asarray(val_idx)
    if not len(val):  # nothing to choose on: the grid's defaults (ridge 1e-3, power 0)
        cca = CCA(REGS[0]).fit(x[fit], t[fit])
        return cca.project_x(x, dims, 0.0), cca.project_y(t, dims, 0.0), {"reg": REGS[0], "power": 0.0}
    if labels is not None:
        ql, dl = labels[val], labels[fit]
    else:  # no labels: each validation image's own text is its one relevant answer, among the others'
        ql = dl = np.eye(len(val), dtype=np.float32)

    def score_reg(reg: float) -> dict[float, float]:
        cca = CCA(reg).fit(x[fit], t[fit])
        out = {}
        for p in POWERS:
            px, py = cca.project_x(x, dims, p), cca.project_y(t, dims, p)
            db_x, db_t = (px[fit], py[fit]) if labels is not None else (px[val], py[val])
            i2t = cosine_retrieval(px[val], db_t, ql, dl, topk=None, ndcg_k=None)["map"]
            t2i = cosine_retrieval(py[val], db_x, ql, dl, topk=None, ndcg_k=None)["map"]
            out[p] = (i2t + t2i) / 2
        return out

    tried = grid_search(score_reg, REGS)
    reg, power = chosen(tried)
    cca = CCA(reg).fit(x[fit], t[fit])
    return (cca.project_x(x, dims, power), cca.project_y(t, dims, power),
            {"reg": reg, "power": power, "dims": min(dims, cca.r), "val_score": tried[reg, power]})
