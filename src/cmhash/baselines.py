"""Shallow baselines computed in the same run as the deep methods.

CCA + random rotation hashing (``cca_hash``): centre both modalities on the training set, fit
regularised CCA, project into the r shared dimensions (r <= min(D, d)), then a random
orthogonal rotation to K bits when K <= r (the "CCA + RR" of Gong et al., TPAMI 2013) or K
random hyperplanes through the shared space when K > r (SimHash; Wiki's 10-d texts give r <= 10),
and sign().
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import eigh


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
        return np.where((np.asarray(x, np.float64) - self.mx) @ self.ax @ self.rot >= 0, 1, -1).astype(np.int8)

    def encode_y(self, y) -> np.ndarray:
        return np.where((np.asarray(y, np.float64) - self.my) @ self.ay @ self.rot >= 0, 1, -1).astype(np.int8)


def cca_hash_codes(feat: np.ndarray, texts: np.ndarray, train, query, database, bits: int, seed: int = 0) -> dict:
    m = CCAHash(bits, seed=seed).fit(feat[train], texts[train])
    return {"q_img": m.encode_x(feat[query]), "q_txt": m.encode_y(texts[query]),
            "db_img": m.encode_x(feat[database]), "db_txt": m.encode_y(texts[database])}
