"""UDSPH's cross-modal attention terms (interpretation; see ``methods/udsph.py``).

The SCAN similarity S^att_ij of image i and text j (``models.cross_attention_similarity``) is
calibrated into the probability that the two are semantically related,
P_ij = sigmoid(kappa S^att_ij + b) with learned kappa, b, and

    L_att  = BCE(P, S)                           S_ij = 1 when i and j share a label (measure)
    L_pres = mean_ij softplus(theta_ij) - P_ij theta_ij,  theta = 1/2 H_I H_T^T        (preserve)

L_att teaches the attention to measure local semantic correlation; L_pres makes the codes keep
it: DCMH's likelihood with the attention's soft probabilities (detached) as targets, so pairs the
attention finds partly related are pulled partly together, where labels alone say 0 or 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .pairwise import pairwise_likelihood_loss


def attention_calibration_loss(s_att: torch.Tensor, target: torch.Tensor, scale: torch.Tensor,
                               bias: torch.Tensor, balance: bool = False) -> torch.Tensor:
    """``balance``: related and unrelated pairs weigh the same (as ``pairwise_likelihood_loss``)."""
    weight = None
    if balance:
        p = target.mean().clamp(1e-6, 1 - 1e-6)
        weight = target * (0.5 / p) + (1 - target) * (0.5 / (1 - p))
    return F.binary_cross_entropy_with_logits(scale * s_att + bias, target, weight=weight)


def attention_preservation_loss(h_img: torch.Tensor, h_txt: torch.Tensor, s_att: torch.Tensor, scale: torch.Tensor,
                                bias: torch.Tensor, balance: bool = False,
                                labels: torch.Tensor | None = None) -> torch.Tensor:
    """``labels`` (Bi, Bt) in [0, 1]: the target is (S + P) / 2, the label agreement graded by the
    attention, instead of P alone."""
    p = torch.sigmoid(scale * s_att + bias).detach()  # (Bi, Bt)
    if labels is not None:
        p = (labels + p) / 2
    return pairwise_likelihood_loss(h_img, h_txt, p, balance)
