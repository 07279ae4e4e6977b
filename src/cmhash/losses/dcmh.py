"""DCMH's objective for one modality's step (Jiang and Li, CVPR 2017, Eq. 3; the authors'
PyTorch code, ``DCMH_pytorch/main.py``):

    theta = 1/2 F_batch G^T                                 (B, N): batch x every training item
    L = [ -sum(S theta - log(1 + e^theta))                  (Eq. 2, the pairwise likelihood)
          + gamma ||B_batch - F_batch||^2                     (quantisation)
          + eta ||F^T 1||^2 ] / (B N)                          (bit balance over the whole training set)

where F is this modality's outputs (the batch's rows fresh, the others from memory), G the other
modality's memory, B = sign(gamma (F + G)) the common codes, S_ij = 1 when items share a label.
The text step is the same with F and G swapped. ``F^T 1`` sums the batch's fresh outputs and the
memory's other rows, as the code does.
"""
from __future__ import annotations

import torch

from .pairwise import pairwise_likelihood_loss


def dcmh_loss(cur: torch.Tensor, other: torch.Tensor, s: torch.Tensor, b_batch: torch.Tensor,
              rest_sum: torch.Tensor, gamma: float = 1.0, eta: float = 1.0) -> tuple[torch.Tensor, dict]:
    """cur (B, K) fresh outputs; other (N, K) the other modality's memory; s (B, N); b_batch (B, K);
    rest_sum (K,) the sum of this modality's memory over the training items not in the batch."""
    norm = cur.shape[0] * other.shape[0]
    nll = pairwise_likelihood_loss(cur, other, s) * norm  # the sum over the B x N pairs
    quant = ((b_batch - cur) ** 2).sum()
    balance = ((cur.sum(0) + rest_sum) ** 2).sum()
    loss = (nll + gamma * quant + eta * balance) / norm
    return loss, {"nll": (nll / norm).item(), "quant": (quant / norm).item(), "balance": (balance / norm).item()}
