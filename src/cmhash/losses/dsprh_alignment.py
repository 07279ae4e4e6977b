"""DSPRH's entire alignment loss (Cheng, Wang, Du, "Deep Semantic-Preserving Reconstruction
Hashing for Unsupervised Cross-Modal Retrieval", Entropy 2020, section 3.4.1).

The paper's text names only Eq. 12 (lambda), Eqs. 15-16 (nu) and Eq. 19 (the total); the other
equations are cited here by what they are, not by a number we cannot check.

The equations did not survive in the text we have; this is our reconstruction from the sentences
around them and from DSAH (Yang et al., ICMR 2020), from which the paper says its alignment loss
"partly comes". B_I = norm(code_I), B_T = norm(code_T) (rows L2-normalised relaxed codes, (B, K));
||.||^2 is a mean over entries (``F.mse_loss``); S_I = 2 cos(F_I) - 1 and S_T = 2 cos(T) - 1 are
the batch feature similarities (frozen image features, text vectors).

    S = mu (lambda S_I + (1 - lambda) S_T),  lambda = 0.9, mu = 1.5       fused matrix   (Eq. 12)

    L_rec   = ||Dec_I(b_I) - T^||^2 + ||Dec_T(b_T) - F_I^||^2              reconstruction
              (the twin-bottleneck decoders: the image branch rebuilds the text feature space,
              the text branch the image feature space; ^ = row-L2-normalised targets)
    L_intra = ||B_I B_I^T - S||^2 + ||B_T B_T^T - S||^2                    within a modality
    L_inter = ||B_I B_T^T - S||^2                                          between modalities
    L_rank  = diagonal ranking of B_I B_T^T (``losses.diagonal_ranking``): by default
              each matched pair outranks its row and column (a softmax at temperature
              0.1, "softmax"); DSAH's ||diag(B_I B_T^T) - mu||^2 is the form "mu"
    L_I^fh  = ||B_I B_I^T - mu S_I||^2,  L_T^fh = ||B_T B_T^T - mu S_T||^2  feature vs hash space (Eqs. 15-16)

    L_align = w_rec L_rec + w_intra L_intra + w_inter L_inter + w_rank L_rank
              + nu (L_I^fh + u L_T^fh),   nu = 0.001, u = 1                                 (entire alignment)

Every weight is a switch: 0 removes the term.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .diagonal_ranking import diagonal_ranking_loss


def alignment_loss(code_img: torch.Tensor, code_txt: torch.Tensor, s: torch.Tensor, s_img: torch.Tensor,
                   s_txt: torch.Tensor, recon_img: torch.Tensor | None, target_txt: torch.Tensor | None,
                   recon_txt: torch.Tensor | None, target_img: torch.Tensor | None, mu: float = 1.5,
                   w_rec: float = 1.0, w_intra: float = 1.0, w_inter: float = 1.0, w_rank: float = 1.0,
                   nu: float = 0.001, u: float = 1.0, rank_form: str = "softmax",
                   rank_margin: float = 0.2, rank_tau: float = 0.1) -> tuple[torch.Tensor, dict]:
    b_i, b_t = F.normalize(code_img, dim=1), F.normalize(code_txt, dim=1)  # (B, K)
    bi_bi, bt_bt, bi_bt = b_i @ b_i.T, b_t @ b_t.T, b_i @ b_t.T  # (B, B)
    zero = code_img.new_zeros(())
    rec = zero
    if recon_img is not None:
        rec = F.mse_loss(recon_img, F.normalize(target_txt, dim=1)) + F.mse_loss(recon_txt, F.normalize(target_img, dim=1))
    intra = F.mse_loss(bi_bi, s) + F.mse_loss(bt_bt, s)
    inter = F.mse_loss(bi_bt, s)
    rank = diagonal_ranking_loss(bi_bt, rank_form, mu, rank_margin, rank_tau)
    fh_i, fh_t = F.mse_loss(bi_bi, mu * s_img), F.mse_loss(bt_bt, mu * s_txt)
    total = w_rec * rec + w_intra * intra + w_inter * inter + w_rank * rank + nu * (fh_i + u * fh_t)
    return total, {"rec": rec.item(), "intra": intra.item(), "inter": inter.item(), "rank": rank.item(),
                   "fh": (fh_i + u * fh_t).item()}
