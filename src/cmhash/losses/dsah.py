"""DSAH's loss (Yang et al., "Deep Semantic-Alignment Hashing", ICMR 2020, as the authors' code
implements it).

With B_I, B_T the row-normalised relaxed codes (as in DJSRH, which DSAH extends), S = mu (0.9 S_I +
0.1 S_T), mu = 1.5, every ||.||^2 a mean-squared error:

    L = ||B_T B_T^T - S||^2 + ||B_I B_T^T - S||^2 + ||B_I B_I^T - S||^2       (semantic alignment)
      + ||diag(B_I B_T^T) - mu||^2                                           (paired items agree)
      + ||dec_I(b_I) - T||^2 + ||dec_T(b_T) - F_I||^2                        (cross reconstruction)
      + 2 ||B_I B_T^T - (B_I B_T^T)^T||^2                                    (symmetry)
      + 0.1 ( ||B_I B_I^T - mu S_I||^2 + ||B_T B_T^T - mu S_T||^2 )          (intra-modal)

``recon_img`` / ``recon_txt`` are the decoders' outputs, computed by the caller from the binary
codes (see ``cmhash.methods.dsah`` for how gradients pass through sign()).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dsah_loss(code_img: torch.Tensor, code_txt: torch.Tensor, s: torch.Tensor, s_img: torch.Tensor,
              s_txt: torch.Tensor, recon_img: torch.Tensor, txt: torch.Tensor, recon_txt: torch.Tensor,
              f_img: torch.Tensor, mu: float = 1.5, w_diag: float = 1.0, w_recon: float = 1.0,
              w_sym: float = 2.0, w_intra: float = 0.1) -> tuple[torch.Tensor, dict]:
    b_i, b_t = F.normalize(code_img, dim=1), F.normalize(code_txt, dim=1)
    bi_bi, bt_bt, bi_bt = b_i @ b_i.T, b_t @ b_t.T, b_i @ b_t.T
    align = F.mse_loss(bt_bt, s) + F.mse_loss(bi_bt, s) + F.mse_loss(bi_bi, s)
    diag = F.mse_loss(torch.diagonal(bi_bt), torch.full_like(torch.diagonal(bi_bt), mu))
    recon = F.mse_loss(recon_img, txt) + F.mse_loss(recon_txt, f_img)
    sym = F.mse_loss(bi_bt, bi_bt.T)
    intra = F.mse_loss(bi_bi, mu * s_img) + F.mse_loss(bt_bt, mu * s_txt)
    total = align + w_diag * diag + w_recon * recon + w_sym * sym + w_intra * intra
    return total, {"align": align.item(), "diag": diag.item(), "recon": recon.item(), "sym": sym.item(),
                   "intra": intra.item()}
