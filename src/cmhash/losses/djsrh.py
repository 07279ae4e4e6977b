"""DJSRH's reconstruction loss (Su, Zhong, Zhang, ICCV 2019, Eq. 6; ``train.py``).

With B_I = norm(code_I), B_T = norm(code_T) (rows L2-normalised relaxed codes, (B, K)):

    L = lambda1 ||B_I B_I^T - S||^2 + ||B_I B_T^T - S||^2 + lambda2 ||B_T B_T^T - S||^2

where ||.||^2 is the mean over the B x B entries (``F.mse_loss``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def djsrh_loss(code_img: torch.Tensor, code_txt: torch.Tensor, s: torch.Tensor,
               lambda1: float = 0.1, lambda2: float = 0.1) -> tuple[torch.Tensor, dict]:
    b_i, b_t = F.normalize(code_img, dim=1), F.normalize(code_txt, dim=1)
    l_ii = F.mse_loss(b_i @ b_i.T, s)
    l_it = F.mse_loss(b_i @ b_t.T, s)
    l_tt = F.mse_loss(b_t @ b_t.T, s)
    total = lambda1 * l_ii + l_it + lambda2 * l_tt
    return total, {"ii": l_ii.item(), "it": l_it.item(), "tt": l_tt.item()}
