"""Local features as token sets, cross-modal attention (UDSPH) and attention pooling (SDEH).

Tokens. An image's local features are the cells of the backbone's conv map (SCAN's regions;
``ImageEncoder.split``); a vector input (a text's bag of words, Wiki's bag of SIFT visual words,
LDA topics) becomes a bag of tokens: its ``max_tokens`` largest entries, each the learned
embedding of its word (``BagTokens``). Padding tokens are masked everywhere.

``cross_attention_similarity`` is SCAN's text-to-image attention (Lee et al., ECCV 2018, section
3.1, the work UDSPH cites for it): for an image i with regions v_r and a text j with words e_w,

    s_rw = LeakyReLU_0.1(cos(v_r, e_w)),  s_rw <- s_rw / ||s_r.||_2        (normalise over words)
    a_rw = softmax_r(lambda s_rw),         att_w = sum_r a_rw v_r           (attend over regions)
    S(i, j) = sum_w m_w cos(att_w, e_w) / sum_w m_w                         (AVG pooling, masked)

for every image-text pair of a batch at once: (Bi, R, d) x (Bt, W, d) -> (Bi, Bt).

``AttentionPool`` is additive attention pooling (Bahdanau et al. 2015; Yang et al. 2016's
hierarchical attention): a_r = softmax_r(u^T tanh(W t_r)), pooled = sum_r a_r t_r.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class BagTokens(nn.Module):
    """(B, D) bag-of-words-like vector -> ((B, T, dim) tokens, (B, T) mask): the T = min(max_tokens, D)
    entries largest in magnitude, token = (value / the row's largest |value|) x the word's learned
    embedding, so a histogram summing to 1 and a binary tag vector give tokens of one scale; zero
    entries are masked."""

    def __init__(self, in_dim: int, dim: int, max_tokens: int = 16):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(in_dim, dim) * dim ** -0.5)
        self.n_tokens = min(max_tokens, in_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mag, idx = x.abs().topk(self.n_tokens, dim=1)  # (B, T)
        val = x.gather(1, idx) / mag[:, :1].clamp_min(1e-12)
        # F.embedding, not self.embed[idx]: the indexing's backward (index_put_ with accumulate) adds
        # repeated words' gradients in a thread-dependent order on CPU, so two runs differed
        return val.unsqueeze(-1) * F.embedding(idx, self.embed), mag > 0  # (B, T, dim)


def cross_attention_similarity(img_tok: torch.Tensor, txt_tok: torch.Tensor, img_mask: torch.Tensor | None = None,
                               txt_mask: torch.Tensor | None = None, smooth: float = 9.0,
                               eps: float = 1e-8) -> torch.Tensor:
    """SCAN t2i similarity of every (image, text) pair: (Bi, R, d), (Bt, W, d) -> (Bi, Bt)."""
    bi, r, _ = img_tok.shape
    bt, w, _ = txt_tok.shape
    img_mask = torch.ones(bi, r, dtype=torch.bool, device=img_tok.device) if img_mask is None else img_mask
    txt_mask = torch.ones(bt, w, dtype=torch.bool, device=txt_tok.device) if txt_mask is None else txt_mask
    v, e = F.normalize(img_tok, dim=-1, eps=eps), F.normalize(txt_tok, dim=-1, eps=eps)
    s = F.leaky_relu(torch.einsum("ird,jwd->ijrw", v, e), 0.1)  # (Bi, Bt, R, W)
    s = s.masked_fill(~txt_mask[None, :, None, :], 0.0)
    s = s / (s.norm(dim=3, keepdim=True) + eps)  # over words
    s = s.masked_fill(~img_mask[:, None, :, None], -1e4)  # finite after x smooth: no NaN on a fully masked row
    a = torch.softmax(smooth * s, dim=2)  # (Bi, Bt, R, W) over regions
    att = torch.einsum("ijrw,ird->ijwd", a, img_tok)  # (Bi, Bt, W, d) attended image vector per word
    rel = F.cosine_similarity(att, txt_tok.unsqueeze(0).expand_as(att), dim=-1, eps=eps)  # (Bi, Bt, W)
    m = txt_mask.to(rel.dtype).unsqueeze(0)  # (1, Bt, W)
    return (rel * m).sum(-1) / m.sum(-1).clamp_min(1.0)


class AttentionPool(nn.Module):
    """Additive attention pooling of tokens (B, T, d) (mask (B, T)) -> ((B, d), weights (B, T))."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)

    def forward(self, tok: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.score(torch.tanh(self.proj(tok))).squeeze(-1)  # (B, T)
        if mask is None:
            a = torch.softmax(logit, dim=1)
        else:  # a finite fill: a row with every token masked (an empty text) pools to zero, not NaN
            a = torch.softmax(logit.masked_fill(~mask, torch.finfo(logit.dtype).min), dim=1)
            a = a * mask.any(1, keepdim=True).to(a.dtype)
        return torch.einsum("bt,btd->bd", a, tok), a


class GlobalLocalEncoder(nn.Module):
    """SDEH's attention-based feature subnetwork (interpretation, see ``methods/sdeh.py``): a global
    branch on the whole input vector and a local branch attention-pooling its tokens, fused:

        g = ReLU(Linear(x_global)),  l = AttentionPool(ReLU(Linear(tokens)))
        f = ReLU(Linear([g ; l]))                                          (B, out_dim)
    """

    def __init__(self, global_dim: int, token_dim: int, hidden: int = 1024, local_dim: int = 256,
                 out_dim: int = 512):
        super().__init__()
        self.glob = nn.Sequential(nn.Linear(global_dim, hidden), nn.ReLU(inplace=True))
        self.tok = nn.Sequential(nn.Linear(token_dim, local_dim), nn.ReLU(inplace=True))
        self.pool = AttentionPool(local_dim)
        self.fuse = nn.Sequential(nn.Linear(hidden + local_dim, out_dim), nn.ReLU(inplace=True))
        self.out_dim = out_dim

    def forward(self, x_global: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        local, _ = self.pool(self.tok(tokens), mask)
        return self.fuse(torch.cat([self.glob(x_global), local], dim=1))
