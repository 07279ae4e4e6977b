"""Batch similarity targets built from features (DJSRH section 3.2; DSAH section 3).

    S_I = 2 cos(F_I) - 1,   S_T = 2 cos(T) - 1,   cos(X) = norm(X) norm(X)^T       (B, B)

DJSRH's joint-semantics matrix (its Eq. 3-5 and ``train.py``):

    S~ = beta S_I + (1 - beta) S_T
    S  = mu [ (1 - eta) S~ + eta S~ S~^T / m ]

DSAH drops the second-order term: S = mu (0.9 S_I + 0.1 S_T).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_similarity(x: torch.Tensor) -> torch.Tensor:
    """2 cos(x) - 1 for (B, D) features -> (B, B) in [-1, 1]. Zero rows give 0 cosine."""
    x = F.normalize(x.float(), dim=1)
    return 2.0 * (x @ x.T) - 1.0


def joint_semantics_matrix(f_img: torch.Tensor, txt: torch.Tensor, beta: float, eta: float, mu: float) -> torch.Tensor:
    """DJSRH's S (B, B) from image features F_I (B, D) and text vectors T (B, d)."""
    s_tilde = beta * feature_similarity(f_img) + (1.0 - beta) * feature_similarity(txt)
    m = s_tilde.shape[0]
    s = (1.0 - eta) * s_tilde + eta * (s_tilde @ s_tilde.T) / m
    return mu * s


def dsah_similarity(f_img: torch.Tensor, txt: torch.Tensor, mu: float = 1.5, beta: float = 0.9):
    """DSAH's S = mu (beta S_I + (1 - beta) S_T), with S_I and S_T also returned: (S, S_I, S_T)."""
    s_i, s_t = feature_similarity(f_img), feature_similarity(txt)
    return mu * (beta * s_i + (1.0 - beta) * s_t), s_i, s_t
