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
                               bias: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(scale * s_att + bias, target)


def attention_preservation_loss(h_img: torch.Tensor, h_txt: torch.Tensor, s_att: torch.Tensor, scale: torch.Tensor,
                                bias: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(scale * s_att + bias).detach()  # (Bi, Bt)
    return pairwise_likelihood_loss(h_img, h_txt, p)
