"""The linear algebra of the shallow cross-modal hashes, shared by the tables' rows
(``eval.baselines``) and the models (``methods.cca``): regularised CCA, ITQ's rotation, the
CCA-ITQ / CCA-RR hash, and the validation grid over the ridge and the power (Gong, Lazebnik,
Gordo, Perronnin, "Iterative Quantization", TPAMI 2013, sec. 5; ``eval.baselines`` says how each
piece is read)."""
from __future__ import annotations

import numpy as np
from scipy.linalg import eigh

from ..codes import sign

#: the grids the validation part chooses from
REGS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
POWERS = (0.0, 1.0, 2.0, 4.0)
ITQ_ITERATIONS = 50


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = eigh(c)
    return (v / np.sqrt(np.maximum(w, 1e-12))) @ v.T


class CCA:
    """Regularised CCA of two views: ``fit(x (N, D), y (N, d))``; ``project_x`` / ``project_y`` give
    the items in the shared space, direction j scaled by corr_j ** power, the first ``dims``."""

    def __init__(self, reg: float = 1e-3):
        self.reg = reg

    def fit(self, x: np.ndarray, y: np.ndarray) -> "CCA":
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self.mx, self.my = x.mean(0), y.mean(0)
        x, y = x - self.mx, y - self.my
        n = len(x)

        def cov(a):
            c = a.T @ a / n
            return c + self.reg * max(np.trace(c) / a.shape[1], 1e-12) * np.eye(a.shape[1])

        wx, wy = _inv_sqrt(cov(x)), _inv_sqrt(cov(y))  # (D, D), (d, d)
        u, s, vt = np.linalg.svd(wx @ (x.T @ y / n) @ wy, full_matrices=False)
        self.r = min(len(s), x.shape[1], y.shape[1])
        self.corr = np.clip(s[: self.r], 0.0, 1.0)  # (r,) canonical correlations, high to low
        self.ax, self.ay = wx @ u[:, : self.r], wy @ vt[: self.r].T  # (D, r), (d, r)
        return self

    def _scale(self, dims: int | None, power: float) -> tuple[slice, np.ndarray]:
        c = self.r if dims is None else min(dims, self.r)
        return slice(0, c), np.maximum(self.corr[:c], 1e-12) ** power

    def project_x(self, x, dims: int | None = None, power: float = 0.0) -> np.ndarray:
        sl, w = self._scale(dims, power)
        return (np.asarray(x, np.float64) - self.mx) @ self.ax[:, sl] * w  # (N, c)

    def project_y(self, y, dims: int | None = None, power: float = 0.0) -> np.ndarray:
        sl, w = self._scale(dims, power)
        return (np.asarray(y, np.float64) - self.my) @ self.ay[:, sl] * w  # (N, c)


def itq_rotation(v: np.ndarray, iterations: int = ITQ_ITERATIONS, seed: int = 0) -> np.ndarray:
    """ITQ (Gong et al. TPAMI 2013, Eq. 3-4): the orthogonal R (c, c) minimising ||sign(VR) - VR||_F
    by alternating B = sign(VR) and R = U W^T from the SVD of B^T V = W Omega U^T; starts from a
    random rotation."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(seed)
    c = v.shape[1]
    r, _ = np.linalg.qr(rng.standard_normal((c, c)))
    # one BLAS thread: the products are small; measured on 2 cores with other work running,
    # 50 iterations at c = 64, N = 3,024 took 6.3 s with OpenBLAS's threads and 0.32 s with one
    with threadpool_limits(1, "blas"):
        for _ in range(iterations):
            b = sign(v @ r).astype(np.float64)  # (N, c)
            w, _, ut = np.linalg.svd(b.T @ v)  # (c, c)
            r = (w @ ut).T
    return r


class CCAHash:
    """CCA-ITQ (``rotation="itq"``) or CCA-RR (``rotation="random"``) codes of K bits (module docstring)."""

    def __init__(self, bits: int, rotation: str = "itq", reg: float = 1e-3, power: float = 0.0, seed: int = 0):
        if rotation not in ("itq", "random"):
            raise ValueError(f"rotation must be 'itq' or 'random', got {rotation!r}")
        self.bits, self.rotation, self.reg, self.power, self.seed = bits, rotation, reg, power, seed

    def fit(self, x: np.ndarray, y: np.ndarray, cca: CCA | None = None) -> "CCAHash":
        self.cca = cca if cca is not None else CCA(self.reg).fit(x, y)
        self.c = min(self.bits, self.cca.r)
        rng = np.random.default_rng(self.seed)
        if self.rotation == "itq":
            v = np.concatenate([self.cca.project_x(x, self.c, self.power), self.cca.project_y(y, self.c, self.power)])
            rot = itq_rotation(v, seed=self.seed)
        else:
            rot, _ = np.linalg.qr(rng.standard_normal((self.c, self.c)))
        extra = rng.standard_normal((self.c, self.bits - self.c))  # K > r: random hyperplanes (SimHash)
        self.rot = np.concatenate([rot, extra], axis=1)  # (c, K)
        return self

    def encode_x(self, x) -> np.ndarray:
        return sign(self.cca.project_x(x, self.c, self.power) @ self.rot)

    def encode_y(self, y) -> np.ndarray:
        return sign(self.cca.project_y(y, self.c, self.power) @ self.rot)


def grid_search(score_reg, regs=REGS, max_widen: int = 3) -> dict[tuple[float, float], float]:
    """{(ridge, power): validation score} over ``regs``; ``score_reg(reg)`` gives {power: score}.
    Where the best ridge lies on an edge of the grid, the grid grows by a factor of 10 on that side
    (at most ``max_widen`` times): a choice on an edge is not a choice (the held-out news set's
    CCA-ITQ chose 10, the largest of the first grid). The one selection loop of CCA-ITQ, CCA-RR and
    real-valued CCA, for the tables (``cca_baselines``) and the models (``methods.cca``)."""
    regs, tried = sorted(regs), {}
    best_of = chosen
    for reg in regs:
        tried.update({(reg, p): s for p, s in score_reg(reg).items()})
    for _ in range(max_widen):
        best = best_of(tried)[0]
        if best == regs[-1]:
            new = best * 10
            regs.append(new)
        elif best == regs[0]:
            new = best / 10
            regs.insert(0, new)
        else:
            break
        tried.update({(new, p): s for p, s in score_reg(new).items()})
    return tried


def chosen(tried: dict[tuple[float, float], float]) -> tuple[float, float]:
    """The (ridge, power) with the best score; an exact tie goes to the larger ridge, then the larger
    power (the order the tables' rows were chosen in)."""
    return max(tried, key=lambda rp: (tried[rp], rp))
