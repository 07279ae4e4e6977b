"""SDEH loss 2 of 4, hash-code informativeness (interpretation; see ``methods/sdeh.py``).

A code is informative when its bits carry the semantics and use their capacity:

    L_info = mean_m [ BCE(sigmoid(W h_m + c), l)          (one classifier W shared by all sources
                                                          reads the labels back from the codes)
                      + w_bal ||mean_batch(h_m)||^2 / K ] (bit balance: each bit splits the batch
                                                          evenly, the maximum-entropy condition)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def informativeness_loss(codes: list[torch.Tensor], logits: list[torch.Tensor], labels: torch.Tensor,
                         w_balance: float = 1.0) -> torch.Tensor:
    """codes: M tensors (B, K); logits: the shared classifier's outputs on them, M x (B, C); labels (B, C)."""
    terms = [F.binary_cross_entropy_with_logits(z, labels) + w_balance * h.mean(0).pow(2).mean()
             for h, z in zip(codes, logits)]
    return torch.stack(terms).mean()
