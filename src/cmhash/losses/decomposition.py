"""SDEH's semantic decomposition (interpretation; see ``methods/sdeh.py``): a modality's feature
f is split into a shared part s (the semantics it shares with the other modality, anchored to the
label net's semantic feature s_L of the same item) and a private part p, the two together
rebuilding f, the parts kept apart (the difference loss of domain separation networks,
Bousmalis et al., NeurIPS 2016):

    L_dec = ||s - s_L||^2 / d  +  ||Dec([s; p]) - f||^2 / D  +  w_orth ||S^ T P^||_F^2 / B^2

(S^, P^: the batch's row-normalised shared / private parts; f and s_L held fixed as targets).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def decomposition_loss(shared: torch.Tensor, private: torch.Tensor, recon: torch.Tensor, feature: torch.Tensor,
                       semantic: torch.Tensor, w_orth: float = 1.0) -> tuple[torch.Tensor, dict]:
    """shared/private/semantic (B, d), recon/feature (B, D)."""
    align = ((shared - semantic.detach()) ** 2).mean()
    rec = ((recon - feature.detach()) ** 2).mean()
    orth = (F.normalize(shared, dim=1).T @ F.normalize(private, dim=1)).pow(2).sum() / shared.shape[0] ** 2
    return align + rec + w_orth * orth, {"align": align.item(), "recon": rec.item(), "orth": orth.item()}
