"""SDEH loss 4 of 4, feature-distribution consistency (interpretation; see ``methods/sdeh.py``):
the shared (semantic) parts of the image and text features and the label net's semantic features
should follow one distribution, measured by the squared maximum mean discrepancy (Gretton et al.,
JMLR 2012) with a sum of Gaussian kernels k(x, y) = sum_s exp(-||x - y||^2 / (2 s^2)) over fixed
bandwidths s, on L2-normalised features (distances in [0, 2], so one set of widths fits every
dimension):

    MMD^2(X, Y) = mean k(X, X) + mean k(Y, Y) - 2 mean k(X, Y)       (biased V-statistic)
    L_fd = MMD^2(S_I, S_L) + MMD^2(S_T, S_L) + MMD^2(S_I, S_T)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

BANDWIDTHS = (0.25, 0.5, 1.0, 2.0)


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor, bandwidths=BANDWIDTHS) -> torch.Tensor:
    d2 = torch.cdist(x, y).pow(2)  # (n, m)
    return sum(torch.exp(-d2 / (2.0 * s * s)) for s in bandwidths)


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths=BANDWIDTHS) -> torch.Tensor:
    """Biased squared MMD between samples x (n, d) and y (m, d)."""
    return (gaussian_kernel(x, x, bandwidths).mean() + gaussian_kernel(y, y, bandwidths).mean()
            - 2.0 * gaussian_kernel(x, y, bandwidths).mean())


def distribution_consistency_loss(s_img: torch.Tensor, s_txt: torch.Tensor, s_lab: torch.Tensor) -> torch.Tensor:
    a, b, c = (F.normalize(t, dim=1) for t in (s_img, s_txt, s_lab))
    return mmd2(a, c) + mmd2(b, c) + mmd2(a, b)
