"""DSPRH's cosine triplet loss (section 3.4.2, reconstructed).

With d(x, y) = 1 - cos(x, y) (the cosine distance) and margin m, for an image code b_I^i, its
paired text code b_T^i (related) and an unrelated text code b_T^{n(i)}:

    L_ct^{I->T} = mean_i max(0, m + d(b_I^i, b_T^i) - d(b_I^i, b_T^{n(i)}))
    L_ct^{T->I} = mean_i max(0, m + d(b_T^i, b_I^i) - d(b_T^i, b_I^{n'(i)}))
    L_ct = L_ct^{I->T} + L_ct^{T->I}

Choosing "unrelated" without labels (the paper is unsupervised and does not say how): the
candidates for anchor i are the batch items j != i whose fused feature similarity S_ij is at or
below the row's ``quantile`` (default: the least similar half). Among them ``mode`` picks:
"hard" (default) the candidate whose code is currently closest to the anchor (hardest negative,
as in VSE++), "random" one uniformly, "least" the least similar one by S.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def select_negatives(sim: torch.Tensor, code_cos: torch.Tensor, mode: str = "hard", quantile: float = 0.5,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Index (B,) of an unrelated item per row. ``sim``: (B, B) feature similarity (not a
    function of the codes); ``code_cos``: (B, B) anchor-vs-candidate code cosines."""
    b = sim.shape[0]
    if b < 2:
        raise ValueError("triplets need a batch of at least 2 items")
    eye = torch.eye(b, dtype=torch.bool, device=sim.device)
    s = sim.detach().masked_fill(eye, float("inf"))
    if mode == "least":
        return s.argmin(dim=1)
    thresh = _row_quantile(s, quantile)  # (B, 1)
    cand = s <= thresh  # (B, B); never the diagonal (inf)
    if mode == "hard":
        return code_cos.detach().masked_fill(~cand, float("-inf")).argmax(dim=1)
    if mode == "random":
        r = torch.rand(sim.shape, generator=generator, device="cpu").to(sim.device)
        return r.masked_fill(~cand, -1.0).argmax(dim=1)
    raise ValueError(f"unknown negative mode {mode!r}; use hard, random or least")


def _row_quantile(s: torch.Tensor, q: float) -> torch.Tensor:
    """Per-row q-quantile of the finite off-diagonal entries (lower order statistic), (B, 1)."""
    b = s.shape[0]
    srt = s.sort(dim=1).values[:, : b - 1]  # (B, B-1): inf diagonal sorted last and dropped
    k = min(b - 2, max(0, int(q * (b - 1)) - 1)) if b > 2 else 0
    return srt[:, k:k + 1]


def cosine_triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                        margin: float = 0.5) -> torch.Tensor:
    """mean_i max(0, m + d(a_i, p_i) - d(a_i, n_i)), d = 1 - cos; all (B, K)."""
    d_pos = 1.0 - F.cosine_similarity(anchor, positive, dim=1)
    d_neg = 1.0 - F.cosine_similarity(anchor, negative, dim=1)
    return torch.relu(margin + d_pos - d_neg).mean()


def bidirectional_cosine_triplet(code_img: torch.Tensor, code_txt: torch.Tensor, sim: torch.Tensor,
                                 margin: float = 0.5, mode: str = "hard", quantile: float = 0.5,
                                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """L_ct = L^{I->T} + L^{T->I} (the entire cosine triplet loss) with negatives drawn from the batch by ``sim``."""
    ni, nt = F.normalize(code_img, dim=1), F.normalize(code_txt, dim=1)
    cos_it = ni @ nt.T  # (B, B): image anchor i vs text j
    neg_t = select_negatives(sim, cos_it, mode, quantile, generator)
    neg_i = select_negatives(sim.T, cos_it.T, mode, quantile, generator)
    l_i2t = cosine_triplet_loss(code_img, code_txt, code_txt[neg_t], margin)
    l_t2i = cosine_triplet_loss(code_txt, code_img, code_img[neg_i], margin)
    return l_i2t + l_t2i, {"ct_i2t": l_i2t.item(), "ct_t2i": l_t2i.item()}
