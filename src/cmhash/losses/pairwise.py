"""DSPRH's cross-modal pairwise likelihood loss (section 3.4.3, reconstructed), the
negative log-likelihood of DCMH (Jiang and Li, CVPR 2017, Eq. 2):

    theta_ij = 1/2 h_I^i . h_T^j                      (relaxed codes, (B, K))
    L_p = mean_ij [ log(1 + exp(theta_ij)) - s_ij theta_ij ]

i.e. p(s_ij | h) = sigmoid(theta_ij)^s_ij (1 - sigmoid(theta_ij))^(1 - s_ij). The paper averages
nothing explicitly; we take the mean over the B x B pairs so the term's scale does not grow with
the batch. Without labels s_ij comes from the fused feature similarity (see
``pairwise_targets``); the supervised methods take it from the labels (``label_similarity``) and
compare a batch with every training item, (B, K) x (N, K), which the same function computes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_targets(s_fused: torch.Tensor, mode: str = "soft", quantile: float = 0.5) -> torch.Tensor:
    """s_ij in [0, 1] from the fused similarity S~ = lambda S_I + (1 - lambda) S_T in [-1, 1]
    (without mu). "soft": (S~ + 1) / 2 = lambda cos_I + (1 - lambda) cos_T; "binary": 1 where S~_ij
    is above the batch's ``quantile`` of off-diagonal values, 0 elsewhere; the diagonal (an
    item's own pair) is 1 in both."""
    s = s_fused.detach()
    eye = torch.eye(s.shape[0], dtype=torch.bool, device=s.device)
    if mode == "soft":
        t = ((s + 1.0) / 2.0).clamp(0.0, 1.0)
    elif mode == "binary":
        thr = torch.quantile(s[~eye].float(), quantile)
        t = (s > thr).to(s.dtype)
    else:
        raise ValueError(f"unknown pairwise target mode {mode!r}; use soft or binary")
    return t.masked_fill(eye, 1.0)


def label_similarity(la: torch.Tensor, lb: torch.Tensor, kind: str = "binary") -> torch.Tensor:
    """(Ba, C) x (Bb, C) multi-hot labels -> (Ba, Bb) targets: "binary" s_ij = 1 when l_i . l_j > 0
    (DCMH, SSAH), "cosine" s_ij = l_i . l_j / (|l_i| |l_j|) in [0, 1] (graded; SDEH)."""
    inter = la @ lb.T
    if kind == "binary":
        return (inter > 0).to(la.dtype)
    if kind == "cosine":
        return inter / (la.norm(dim=1, keepdim=True) * lb.norm(dim=1)[None, :]).clamp_min(1e-12)
    raise ValueError(f"unknown label similarity {kind!r}; use binary or cosine")


def pairwise_likelihood_loss(code_img: torch.Tensor, code_txt: torch.Tensor, target: torch.Tensor,
                             balance: bool = False) -> torch.Tensor:
    """mean_ij w_ij [softplus(theta_ij) - s_ij theta_ij], theta = 1/2 a b^T: (Ba, K), (Bb, K), (Ba, Bb) -> ().

    w_ij = 1, or with ``balance`` HashNet's weighted likelihood (Cao et al., ICCV 2017, Eq. 4):
    similar pairs weigh 1 / (2 p) and dissimilar ones 1 / (2 (1 - p)), p the share of similar
    pairs in ``target`` (soft targets interpolate), so that both kinds count equally however rare
    similar pairs are (single-label data with C classes: p ~ 1 / C)."""
    theta = 0.5 * code_img @ code_txt.T  # (Ba, Bb)
    nll = F.softplus(theta) - target * theta
    if not balance:
        return nll.mean()
    p = target.detach().mean().clamp(1e-6, 1 - 1e-6)
    w = target.detach() * (0.5 / p) + (1 - target.detach()) * (0.5 / (1 - p))
    return (w * nll).mean()
