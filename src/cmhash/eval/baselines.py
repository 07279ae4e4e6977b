"""Baselines computed in the same run as the deep methods, on the same split.

- ``random_codes_metrics``: random {-1,+1} codes for every item, the floor of every table.
- ``label_prior``: the fraction of (query, database) pairs that share a label, the precision of a
  random ranking.
- CCA hashing (below), the shallow cross-modal baseline.

CCA + random rotation hashing (``cca_hash``): centre both modalities on the training set, fit
regularised CCA, project into the r shared dimensions (r <= min(D, d)), then a random
orthogonal rotation to K bits when K <= r (the "CCA + RR" of Gong et al., TPAMI 2013) or K
random hyperplanes through the shared space when K > r (SimHash; Wiki's 10-d texts give r <= 10),
and sign().
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import eigh

from ..codes import sign
from .runner import evaluate_codes


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = eigh(c)
    return (v / np.sqrt(np.maximum(w, 1e-12))) @ v.T


class CCAHash:
    def __init__(self, bits: int, reg: float = 1e-3, seed: int = 0):
        self.bits, self.reg, self.seed = bits, reg, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> "CCAHash":
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self.mx, self.my = x.mean(0), y.mean(0)
        x, y = x - self.mx, y - self.my
        n = len(x)
        cxx = x.T @ x / n + self.reg * np.eye(x.shape[1]) * max(np.trace(x.T @ x / n) / x.shape[1], 1e-12)
        cyy = y.T @ y / n + self.reg * np.eye(y.shape[1]) * max(np.trace(y.T @ y / n) / y.shape[1], 1e-12)
        wx, wy = _inv_sqrt(cxx), _inv_sqrt(cyy)
        u, s, vt = np.linalg.svd(wx @ (x.T @ y / n) @ wy)
        r = min(len(s), x.shape[1], y.shape[1])
        self.ax, self.ay = wx @ u[:, :r], wy @ vt[:r].T  # (D, r), (d, r)
        rng = np.random.default_rng(self.seed)
        if self.bits <= r:
            q, _ = np.linalg.qr(rng.standard_normal((r, r)))
            self.rot = q[:, : self.bits]
        else:
            self.rot = rng.standard_normal((r, self.bits))
        return self

    def encode_x(self, x) -> np.ndarray:
        return sign((np.asarray(x, np.float64) - self.mx) @ self.ax @ self.rot)

    def encode_y(self, y) -> np.ndarray:
        return sign((np.asarray(y, np.float64) - self.my) @ self.ay @ self.rot)


def cca_hash_codes(feat: np.ndarray, texts: np.ndarray, train, query, database, bits: int, seed: int = 0) -> dict:
    m = CCAHash(bits, seed=seed).fit(feat[train], texts[train])
    return {"q_img": m.encode_x(feat[query]), "q_txt": m.encode_y(texts[query]),
            "db_img": m.encode_x(feat[database]), "db_txt": m.encode_y(texts[database])}


def cca_hash_metrics(inputs, bits: int, seed: int = 0, curves: bool = False) -> dict:
    """CCA hashing fitted on the training part of ``inputs`` (``data.inputs.Inputs``), scored on its protocol."""
    s, lab = inputs.split, inputs.data.labels
    codes = cca_hash_codes(inputs.feat, inputs.data.texts, s.train, s.query, s.database, bits, seed=seed)
    return evaluate_codes(codes, lab[s.query], lab[s.database], curves=curves)


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
