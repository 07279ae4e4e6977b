"""SSAH's adversarial terms (Li et al., CVPR 2018, Eq. 7; the code's ``Loss_D`` and
``Loss_adver_I/T``), with sigmoid cross-entropy on the discriminators' logits:

    L_D   = 1/4 [ BCE(D_I(F_I), 0) + BCE(D_T(F_T), 0) + BCE(D_I(F_L), 1) + BCE(D_T(F_L), 1) ]
    adv_* = BCE(D_*(F_*), 1)        (the modality net wants its features taken for the LabNet's)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the given logit tensors of BCE(real -> 1) and BCE(fake -> 0)."""
    terms = [F.binary_cross_entropy_with_logits(x, torch.ones_like(x)) for x in real_logits]
    terms += [F.binary_cross_entropy_with_logits(x, torch.zeros_like(x)) for x in fake_logits]
    return torch.stack(terms).mean()


def generator_loss(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
