"""SDEH loss 1 of 4, multi-level semantic similarity (interpretation; see ``methods/sdeh.py``).

Binary "shares a label" treats an item sharing one of five labels like one sharing all five; the
graded similarity S^g_ij = cos(l_i, l_j) in [0, 1] keeps the levels. Codes of every pair of
sources a <= b in {image, text, label} are fitted to it, S^g mapped onto the cosine range:

    L_ms = mean_{a<=b} mean_ij ( cos(h_a^i, h_b^j) - (2 S^g_ij - 1) )^2

(no shared label -> opposite codes, the same labels -> equal codes, half overlap -> orthogonal).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def multilevel_similarity_loss(codes: list[torch.Tensor], graded: torch.Tensor) -> torch.Tensor:
    """codes: M tensors (B, K); graded (B, B) in [0, 1]."""
    target = 2.0 * graded - 1.0
    unit = [F.normalize(h, dim=1) for h in codes]
    terms = [((unit[a] @ unit[b].T - target) ** 2).mean() for a in range(len(unit)) for b in range(a, len(unit))]
    return torch.stack(terms).mean()
