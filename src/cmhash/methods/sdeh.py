"""SDEH: semantic decomposition and enhancement hashing (Fei, He, Wong, Zhu, Zhao, Wen, Pattern
Recognition 160, 111225, 2025). Only the abstract exists; this is our design from it and from
the works it builds on. Every choice below is an interpretation.

1. "Two independent attention-based feature learning subnetworks to capture the modality-specific
   features with both global and local details" (``models.GlobalLocalEncoder``): a global branch
   on the whole input vector (pooled image features / the bag of words) and a local branch that
   attention-pools the modality's tokens (additive attention, ``models.AttentionPool``): the
   backbone conv map's cells for images (cached maps, ``regions: true``) or, on feature-vector
   data, its largest entries as tokens; a text's largest bag-of-words entries. The two branches
   are fused into a 512-d feature f.
2. "Semantic features from multi-label vectors by decomposing the shared semantic information
   among multi-modal features": a label net maps the multi-hot vector to a semantic feature s_L;
   each modality's f is decomposed into a shared part s (anchored to the pair's s_L) and a private
   part p, which together rebuild f and are kept orthogonal (``losses.decomposition_loss``, after
   domain separation networks). Codes come from the shared parts only, through one hash layer
   common to image, text and label (the "common hash code representations"):
   h_m = tanh(W s_m), m in {I, T, L}.
3. "Quadruple losses, making the hash codes informative while simultaneously preserving multilevel
   semantic relationships and feature distribution consistency": the four we chose,
   - multi-level semantic similarity (``losses.multilevel_similarity_loss``): code cosines of all
     source pairs fitted to the graded label similarity cos(l_i, l_j), not to 0/1;
   - hash-code informativeness (``losses.informativeness_loss``): one classifier reads the labels
     back from every source's code, plus bit balance;
   - cross-modal consistency (``losses.consistency_loss``): image, text and label codes pulled to
     their common binary code sign(h_I + h_T + h_L) (this is also the quantisation);
   - feature-distribution consistency (``losses.distribution_consistency_loss``): MMD between the
     shared image, shared text and label semantic features.
   The decomposition's own loss (point 2) is the structural term that makes the split meaningful;
   it is weighted separately (``w_dec``) and is not counted among the four.

One joint step per batch (no alternation), Adam; the learning rate decays exponentially to
``lr_decay_to`` of its start over the run.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..losses import (consistency_loss, decomposition_loss, distribution_consistency_loss, informativeness_loss,
                      label_similarity, multilevel_similarity_loss)
from ..models import BagTokens, GlobalLocalEncoder, ImageEncoder
from ..models.supervised_nets import input_norm
from .base import HashMethod, register_method


class _Branch(nn.Module):
    """One modality: attention-based subnetwork, then the shared / private decomposition."""

    def __init__(self, global_dim: int, token_dim: int, cfg):
        super().__init__()
        self.enc = GlobalLocalEncoder(global_dim, token_dim, cfg.hidden, cfg.local_dim, cfg.feat_dim)
        self.shared = nn.Sequential(nn.Linear(cfg.feat_dim, cfg.sem_dim), nn.ReLU(inplace=True))
        self.private = nn.Sequential(nn.Linear(cfg.feat_dim, cfg.sem_dim), nn.ReLU(inplace=True))
        self.dec = nn.Linear(2 * cfg.sem_dim, cfg.feat_dim)

    def forward(self, g: torch.Tensor, tok: torch.Tensor, mask: torch.Tensor | None) -> dict:
        f = self.enc(g, tok, mask)  # (B, feat_dim)
        s, p = self.shared(f), self.private(f)  # (B, sem_dim) each
        return {"f": f, "s": s, "p": p, "recon": self.dec(torch.cat([s, p], 1))}


@register_method("sdeh", supervised=True)
class SDEH(HashMethod):
    """SDEH (2025): attention subnetworks, semantic decomposition, quadruple losses.

    Fei et al., Pattern Recognition 2025, designed from its abstract (module docstring).
    """

    small = {"hidden": 64, "local_dim": 16, "feat_dim": 32, "sem_dim": 16, "tok_dim": 8, "lab_hidden": 32}

    def build(self, cfg):
        img_dim, txt_dim, n_labels = self.img_dim, self.txt_dim, self.n_labels
        self.img_in = ImageEncoder(img_dim, self.map_channels, self.image_backbone(), hidden=0, norm=cfg.input_norm)
        region_dim = self.img_in.region_dim
        self.img_bag = None if region_dim else BagTokens(img_dim, cfg.tok_dim, cfg.max_tokens)
        self.img = _Branch(self.img_in.out_dim, region_dim or cfg.tok_dim, cfg)
        self.txt_bag = BagTokens(txt_dim, cfg.tok_dim, cfg.max_tokens)
        self.txt_norm = input_norm(txt_dim, cfg.input_norm)
        self.txt = _Branch(txt_dim, cfg.tok_dim, cfg)
        self.lab = nn.Sequential(nn.Linear(n_labels, cfg.lab_hidden), nn.ReLU(inplace=True),
                                 nn.Linear(cfg.lab_hidden, cfg.sem_dim), nn.ReLU(inplace=True))
        self.hash = nn.Linear(cfg.sem_dim, self.bits)  # common to image, text and label
        self.classifier = nn.Linear(self.bits, n_labels)

    def image_branch(self, x: torch.Tensor) -> dict:
        g, regions = self.img_in.split(x)  # g standardised; tokens from the raw input
        if regions is not None:
            return self.img(g, regions, None)
        tok, mask = self.img_bag(x)
        return self.img(g, tok, mask)

    def text_branch(self, t: torch.Tensor) -> dict:
        tok, mask = self.txt_bag(t)
        return self.txt(self.txt_norm(t), tok, mask)

    def encode_image(self, x):
        return torch.tanh(self.hash(self.image_branch(x)["s"]))

    def encode_text(self, t):
        return torch.tanh(self.hash(self.text_branch(t)["s"]))

    def loss(self, batch):
        c = self.cfg
        lab = batch["label"]
        bi, bt = self.image_branch(batch["image"]), self.text_branch(batch["text"])
        s_l = self.lab(lab)  # (B, sem_dim)
        codes = [torch.tanh(self.hash(s)) for s in (bi["s"], bt["s"], s_l)]  # 3 x (B, K)
        l_ms = multilevel_similarity_loss(codes, label_similarity(lab, lab, "cosine" if c.graded else "binary"))
        l_info = informativeness_loss(codes, [self.classifier(h) for h in codes], lab, c.w_balance)
        l_cons = consistency_loss(codes)
        l_fd = distribution_consistency_loss(bi["s"], bt["s"], s_l)
        dec_i, _ = decomposition_loss(bi["s"], bi["p"], bi["recon"], bi["f"], s_l, c.w_orth)
        dec_t, _ = decomposition_loss(bt["s"], bt["p"], bt["recon"], bt["f"], s_l, c.w_orth)
        l_dec = (dec_i + dec_t) / 2
        loss = c.w_ms * l_ms + c.w_info * l_info + c.w_cons * l_cons + c.w_fd * l_fd + c.w_dec * l_dec
        return loss, {"ms": l_ms.item(), "info": l_info.item(), "cons": l_cons.item(), "fd": l_fd.item(),
                      "dec": l_dec.item()}

    def make_optimizer(self):
        return torch.optim.Adam(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
