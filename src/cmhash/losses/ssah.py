"""SSAH's per-network objective (Li et al., CVPR 2018, Eqs. 3-6; the authors' ``SSAH.py``).

For the label net (L), and for the image (I) and text (T) nets guided by it:

    L_* = alpha J(F_*, F_L^mem) + gamma J(H_*, H_L^mem)        (pairwise likelihood, feature and hash level)
          + beta ||sign(H_*) - H_*||^2                          (quantisation to its own signs)
          + eta ||L^_* - L||^2                                  (label prediction)
          [ + delta adv_* ]                                     (image and text nets: fool the discriminator)

with J(A, M) = mean_ij softplus(theta_ij) - S_ij theta_ij, theta = 1/2 A M^T over the batch x every
training item, F_L^mem / H_L^mem the LabNet's memorised features / codes, S_ij = 1 when items share
a label. Every term is a mean, as the code's ``mse_criterion`` is (the paper writes sums); the code
also computes J as mse(S theta, log(1 + e^theta)), a slip we do not copy: J is the negative
log-likelihood of the paper's Eq. 3.
"""
from __future__ import annotations

import torch

from .pairwise import pairwise_likelihood_loss


def ssah_net_loss(h: torch.Tensor, f: torch.Tensor, lab_pred: torch.Tensor, labels: torch.Tensor,
                  h_mem: torch.Tensor, f_mem: torch.Tensor, s: torch.Tensor, alpha: float = 1.0, gamma: float = 1.0,
                  beta: float = 1.0, eta: float = 1.0, balance: bool = False) -> tuple[torch.Tensor, dict]:
    """h (B, K), f (B, F), lab_pred/labels (B, C), h_mem (N, K), f_mem (N, F), s (B, N).
    ``balance``: similar and dissimilar pairs weigh the same in J (``pairwise_likelihood_loss``)."""
    pair_f = pairwise_likelihood_loss(f, f_mem, s, balance)
    pair_h = pairwise_likelihood_loss(h, h_mem, s, balance)
    quant = ((torch.sign(h).detach() - h) ** 2).mean()
    label = ((lab_pred - labels) ** 2).mean()
    loss = alpha * pair_f + gamma * pair_h + beta * quant + eta * label
    return loss, {"pair_feat": pair_f.item(), "pair_hash": pair_h.item(), "quant": quant.item(),
                  "label": label.item()}
