"""UCCH's two losses (Hu, Zhu, Lin, Peng, Zhao, Peng, "Unsupervised Contrastive Cross-Modal
Hashing", TPAMI 2023, Eq. 3-4, 8 and 14; the authors' ``NCEAverage.py`` and ``ContrastiveLoss``).

Contrastive hashing (Eq. 3-4): h_x, h_y (B, K) are the L2-normalised outputs of the image and text
nets; keys are signs of a memory bank v (N, K) of both modalities' outputs. For each item,
the positive key k+ = sgn(v_i) and K_neg negative keys k-_j = sgn(v_j) (j drawn uniformly):

    L_c = sum_{* in x, y} -1/B sum_i log softmax([<h*_i, k+_i>, <h*_i, k-_i1>, ...] / t')_0

with t' = t sqrt(K): the code divides by t sqrt(bits), so that <h, sgn(v)> / sqrt(bits), a cosine,
meets the temperature t.

Cross-modal ranking (Eq. 8 and 14): with M = h_x h_y^T (B, B) and, per query row i,
S_ij = M_ij where M_ii - M_ij <= m (inside the margin, the diagonal included), else M_ij - xi,

    L_r = 1/B sum_i (m + kappa log sum_j exp(S^xy_ij / kappa) - S^xy_ii)
        + 1/B sum_i (m + kappa log sum_j exp(S^yx_ij / kappa) - S^yx_ii),   S^yx from M^T

(the code's kappa = 1, xi = ``shift`` = 1, m = 0.2).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def contrastive_hashing_loss(h_img: torch.Tensor, h_txt: torch.Tensor, keys: torch.Tensor,
                             t: float = 0.9) -> tuple[torch.Tensor, dict]:
    """``keys`` (B, 1 + K_neg, K): each item's positive key first, then its negatives (+-1)."""
    scale = t * math.sqrt(h_img.shape[1])
    losses = {}
    for name, h in (("img", h_img), ("txt", h_txt)):
        logits = torch.bmm(keys, h.unsqueeze(2)).squeeze(2) / scale  # (B, 1 + K_neg)
        losses[name] = F.cross_entropy(logits, torch.zeros(len(h), dtype=torch.long, device=h.device))
    total = losses["img"] + losses["txt"]
    return total, {k: v.item() for k, v in losses.items()}


def cross_modal_ranking_loss(h_img: torch.Tensor, h_txt: torch.Tensor, margin: float = 0.2, shift: float = 1.0,
                             kappa: float = 1.0) -> tuple[torch.Tensor, dict]:
    m = h_img @ h_txt.T  # (B, B) M^xy; its transpose is M^yx
    parts = {}
    for name, scores in (("i2t", m), ("t2i", m.T)):
        d = scores.diagonal().unsqueeze(1)  # (B, 1)
        inside = (scores >= d - margin).detach()
        s = torch.where(inside, scores, scores - shift)
        parts[name] = (margin + kappa * torch.logsumexp(s / kappa, dim=1) - s.diagonal()).mean()
    total = parts["i2t"] + parts["t2i"]
    return total, {k: v.item() for k, v in parts.items()}
