"""CCA-ITQ and CCA-RR as models: the shallow rows of every table, trained, saved, encoded, indexed
and served like any method.

**CCA-ITQ** (Gong, Lazebnik, Gordo, Perronnin, "Iterative Quantization", TPAMI 2013, sec. 5) and
**CCA-RR** (the same with a random rotation): ``models.cca.CCAHash`` on ``models.cca.CCA``
(regularised CCA of the frozen image features and the text vectors, the top c = min(K, r)
canonical directions scaled by corr ** p, the ITQ rotation learned on both views' training
items). The model is two affine maps: code = sign((x - mean_x) @ proj_x) for images and
sign((t - mean_t) @ proj_t) for texts, (D, K) and (d, K), kept as buffers so a checkpoint holds
them and ``load_model`` reads them back.

Fitting is closed form (``closed_form = True``: the trainer calls ``fit_closed_form`` instead of
running epochs). The ridge and the power are chosen on the validation part of the training set,
by the loop the tables' rows use (``models.cca.grid_search``): each (ridge, power) is fitted on
the rest of the training set and scored by the trainer (mean I->T / T->I mAP of the validation
items against the rest; without labels, each validation image against the validation texts with
its own caption as the one relevant item), then CCA is fitted again on the whole training set
with the best pair. The grid widens past an edge where the choice sits. On the same inputs and
seed the model's mAP is the table row's (``tests/methods/test_cca.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.cca import CCA, POWERS, REGS, CCAHash, chosen, grid_search
from ..utils import CmhashError
from .base import HashMethod, register_method


@dataclass
class CCAConfig:
    regs: tuple = REGS  # ridges (relative to each view's mean variance) the validation part chooses from
    powers: tuple = POWERS  # powers p of the canonical correlations scaling each direction
    max_widen: int = 3  # how many times the ridge grid may grow by 10x past an edge the choice sits on
    select: str = "map"  # the validation score: the trainer's mean of I->T and T->I mAP


@register_method("cca-itq")
class CCAITQ(HashMethod):
    """CCA-ITQ (Gong et al. TPAMI 2013): regularised CCA + ITQ rotation, closed form, fitted in seconds."""
    Config = CCAConfig
    closed_form = True
    rotation = "itq"

    def build(self, cfg) -> None:
        if self.spec.image.mode not in ("features", "pooled"):
            raise CmhashError(f"{self.name} fits on frozen image features; this run's image input is "
                              f"{self.spec.image.mode!r} (fine-tuning and feature maps need a deep method)")
        self.register_buffer("mean_x", torch.zeros(self.img_dim, dtype=torch.float64))
        self.register_buffer("proj_x", torch.zeros(self.img_dim, self.bits, dtype=torch.float64))  # (D, K)
        self.register_buffer("mean_t", torch.zeros(self.txt_dim, dtype=torch.float64))
        self.register_buffer("proj_t", torch.zeros(self.txt_dim, self.bits, dtype=torch.float64))  # (d, K)
        self.register_buffer("chosen", torch.zeros(2, dtype=torch.float64))  # (ridge, power) chosen on validation

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.double() - self.mean_x) @ self.proj_x).float()  # (B, K)

    def encode_text(self, t: torch.Tensor) -> torch.Tensor:
        return ((t.double() - self.mean_t) @ self.proj_t).float()  # (B, K)

    def affine_text(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean (d,), projection (d, K)): the text side as numbers, for a query path without torch."""
        return self.mean_t.cpu().numpy(), self.proj_t.cpu().numpy()

    def _set(self, h: CCAHash) -> None:
        """The fitted hash as the two affine maps: (x - mx) @ A[:, :c] * w @ R = (x - mx) @ proj."""
        sl, w = h.cca._scale(h.c, h.power)
        for side, mean, a in (("x", h.cca.mx, h.cca.ax), ("t", h.cca.my, h.cca.ay)):
            getattr(self, f"mean_{side}").copy_(torch.from_numpy(mean))
            getattr(self, f"proj_{side}").copy_(torch.from_numpy((a[:, sl] * w) @ h.rot))
        self.chosen.copy_(torch.tensor([h.reg, h.power], dtype=torch.float64))

    def fit_closed_form(self, x: np.ndarray, t: np.ndarray, fit_rows: np.ndarray, score, seed: int = 0) -> dict:
        """Choose (ridge, power) on validation, then fit on all of ``x`` (N, D) / ``t`` (N, d).

        ``fit_rows``: the positions of the rows the candidates are fitted on (the rest is the
        validation part); ``score()``: the validation score of the model as it stands (the trainer's).
        Returns what was tried and chosen."""
        x, t = np.asarray(x, np.float64), np.asarray(t, np.float64)
        cfg = self.cfg

        def score_reg(reg: float) -> dict[float, float]:
            cca = CCA(reg).fit(x[fit_rows], t[fit_rows])
            out = {}
            for p in cfg.powers:
                self._set(CCAHash(self.bits, self.rotation, reg, p, seed).fit(x[fit_rows], t[fit_rows], cca))
                out[p] = float(score())
            return out

        tried = grid_search(score_reg, cfg.regs, cfg.max_widen)
        reg, power = chosen(tried)
        h = CCAHash(self.bits, self.rotation, reg, power, seed).fit(x, t)
        self._set(h)
        return {"reg": reg, "power": power, "r": h.cca.r, "directions": h.c, "val_score": tried[reg, power],
                "grid": sorted({r for r, _ in tried})}


@register_method("cca-rr")
class CCARR(CCAITQ):
    """CCA-RR (Gong et al. TPAMI 2013): regularised CCA + a random rotation, closed form."""
    Config = CCAConfig
    rotation = "random"
