"""DGCPN's graph-neighbour similarity and loss (Yu, Zhou, Zhan, Tao, "Deep Graph-neighbor
Coherence Preserving Network for Unsupervised Cross-modal Hashing", AAAI 2021; the authors'
``train_div.py``).

Similarity over the whole training set (N items, computed once), from cosines of frozen image
features and text vectors:

    P = a1 cos(T) + (1 - a1) cos(F_I)                          (N, N) pairwise coherence
    P' = P with all but each row's k largest entries zeroed, the row's own largest
         (itself) zeroed too, then rows normalised to sum 1    (graph neighbours)
    G = scale * P' P'^T                                        (shared-neighbour coherence)
    S = 2 ((1 - a2) P + a2 G) - 1

The code takes ``knn_number`` = N - k (the entries dropped); ``knn`` here is the paper's k as a
fraction of N (k = 2,000 of MIRFlickr's 5,000: 0.4). ``scale`` grows with k in the code (4,000 for
k = 2,000, where a row of P' holds about 1/k per neighbour, so G's diagonal is about scale / k);
here ``scale = scale_per_neighbour * k`` with 2.0, the code's ratio, so the same preset carries to
other training-set sizes.

Loss on a batch (B_I, B_T the row-normalised relaxed codes, off-diagonal means in the second term):

    L = ||diag(B_I B_T^T) - K||^2
        + dw (||B_T B_T^T - S||^2 + ||B_I B_T^T - S||^2 + ||B_I B_I^T - S||^2)_off-diagonal
        + cw (||B_I B_T^T - B_I B_I^T||^2 + ||B_I B_T^T - B_T B_T^T||^2
              + ||B_I B_I^T - B_T B_T^T||^2 + ||B_I B_T^T - (B_I B_T^T)^T||^2)

``||.||^2`` is ``F.mse_loss`` (a mean over all B x B entries, the masked diagonal counting as 0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dgcpn_similarity(f_img: torch.Tensor, txt: torch.Tensor, knn: float = 0.4, a1: float = 0.01,
                     a2: float = 0.3, scale_per_neighbour: float = 2.0) -> torch.Tensor:
    """DGCPN's S (N, N) over all training items: f_img (N, D), txt (N, d)."""
    n = len(f_img)
    fi, ft = F.normalize(f_img.float(), dim=1), F.normalize(txt.float(), dim=1)
    s_pair = a1 * (ft @ ft.T) + (1 - a1) * (fi @ fi.T)  # (N, N)
    k = max(1, min(n - 1, round(knn * n)))
    order = s_pair.argsort(dim=1)  # ascending
    keep = torch.zeros_like(s_pair, dtype=torch.bool)
    keep.scatter_(1, order[:, n - k:], True)  # the k largest ...
    keep.scatter_(1, order[:, -1:], False)  # ... less the largest (the item itself)
    p = torch.where(keep, s_pair, torch.zeros_like(s_pair))
    p = p / p.sum(1, keepdim=True).clamp_min(1e-12)
    g = (p @ p.T) * (scale_per_neighbour * k)
    return ((1 - a2) * s_pair + a2 * g) * 2.0 - 1.0


def dgcpn_loss(code_img: torch.Tensor, code_txt: torch.Tensor, s: torch.Tensor, k: float = 1.5, dw: float = 1.0,
               cw: float = 1.0) -> tuple[torch.Tensor, dict]:
    b_i, b_t = F.normalize(code_img, dim=1), F.normalize(code_txt, dim=1)
    bi_bi, bt_bt, bi_bt = b_i @ b_i.T, b_t @ b_t.T, b_i @ b_t.T
    off = 1.0 - torch.eye(len(s), device=s.device, dtype=s.dtype)
    diag = bi_bt.diagonal()
    pair = F.mse_loss(diag, torch.full_like(diag, k))
    dis = (F.mse_loss(bt_bt * off, s * off) + F.mse_loss(bi_bt * off, s * off)
           + F.mse_loss(bi_bi * off, s * off))
    cons = (F.mse_loss(bi_bt, bi_bi) + F.mse_loss(bi_bt, bt_bt) + F.mse_loss(bi_bi, bt_bt)
            + F.mse_loss(bi_bt, bi_bt.T))
    total = pair + dw * dis + cw * cons
    return total, {"pair": pair.item(), "dis": dis.item(), "cons": cons.item()}
