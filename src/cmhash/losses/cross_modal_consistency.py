"""SDEH loss 3 of 4, cross-modal consistency (interpretation; see ``methods/sdeh.py``).

The pair's image, text and label codes share one binary code, b = sign(h_I + h_T + h_L) (SSAH's
B = sign(H + F + G), here per batch), and each relaxed code is pulled to it, which also quantises:

    L_cons = mean_m mean ||h_m - b||^2 / K,    b held fixed
"""
from __future__ import annotations

import torch


def consistency_loss(codes: list[torch.Tensor]) -> torch.Tensor:
    """codes: M tensors (B, K) in (-1, 1)."""
    total = torch.stack(codes).sum(0).detach()
    b = torch.where(total >= 0, torch.ones_like(total), -torch.ones_like(total))
    return torch.stack([((h - b) ** 2).mean() for h in codes]).mean()
