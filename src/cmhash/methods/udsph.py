"""UDSPH: self-supervised deep semantics-preserving hashing (Lu, Duan, Yuan, J. Tsinghua Univ.
(Sci. & Tech.) 62(9), 2022). Only the abstract exists; this is our design from it and from the
works it builds on. Every choice below is an interpretation.

What the abstract says, and how each part is built:

1. "Two modality-specific hashing networks ... generating the Hash codes and high-level
   features": SSAH's image and text nets (``methods/ssah.py``: a 512-d feature, a tanh hash layer
   and a label-prediction layer each), since point 3 is SSAH's scheme.
2. "The semantic relationship between different modalities is then measured using cross-modal
   attention mechanisms that maximize preservation of the local semantic correlation": SCAN's
   stacked cross attention (Lee et al., ECCV 2018, which the paper cites) between the image's local
   tokens and the text's words (``models.cross_attention_similarity``, text-to-image, lambda = 9).
   - image tokens: the backbone conv map's cells (cached maps by default, ``regions: true``); on a
     dataset of feature vectors (Wiki's bag of SIFT words) its largest visual words
     (``models.BagTokens``); text tokens: its largest bag-of-words entries;
   - each side also gets its net's high-level feature as one more token, so the attention reads
     (and trains) the hashing networks' features and not only the input;
   - "measured": the similarity is calibrated into P_ij = sigmoid(kappa S^att_ij + b), trained by
     BCE against label agreement (``losses.attention_calibration_loss``);
   - "preservation": the codes keep it, DCMH's likelihood on H_I H_T^T with soft targets
     (``losses.attention_preservation_loss``): (S + P) / 2, the label agreement graded by the
     attention (P detached; ``pres_target: attention`` takes P alone, which on UCM-captions pulls
     every pair to the base rate while the attention is still uninformative: mAP .59 against .86).
3. "Multi-label semantic information ... guide the training of two modality-specific Hashing
   networks by self-supervised adversarial learning": SSAH's LabNet (pairwise likelihood against
   its memorised features and codes, label prediction, quantisation) and its two discriminators.

Training follows SSAH's phases (label net, discriminators, image net, text net); the attention
terms join the image phase (text side held fixed) and the text phase (image side held fixed),
so each net is still updated alone, as in SSAH. The attention parts use Adam at the modality
net's rate x ``att_lr_mult`` (the calibration kappa, b moves in both phases). The attention
terms use the batch's first ``att_pairs`` items (the batch is a random draw): all n^2
image-text pairs cost n^2 x regions x words x width; 32 keeps it cheap on a CPU, 0 takes the
whole batch (SCAN's usual 128 on a GPU). Presets, input standardisation and the departures from
SSAH's code are SSAH's (see ``methods/ssah.py`` and docs/supervised.md).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..losses import attention_calibration_loss, attention_preservation_loss, label_similarity
from ..models import BagTokens, cross_attention_similarity
from ..utils import CmhashError
from .base import register_method
from .ssah import SSAH


class _Tokens(nn.Module):
    """One modality's tokens for the attention: its net's feature as a token, then the local ones."""

    def __init__(self, feat_dim: int, att_dim: int, in_dim: int, region_dim: int, max_tokens: int):
        super().__init__()
        self.glob = nn.Linear(feat_dim, att_dim)
        if region_dim:
            self.local = nn.Linear(region_dim, att_dim)
        else:
            self.bag = BagTokens(in_dim, att_dim, max_tokens)

    def forward(self, feature: torch.Tensor, x: torch.Tensor, regions: torch.Tensor | None):
        g = self.glob(feature).unsqueeze(1)  # (B, 1, d)
        if regions is not None:
            tok = self.local(regions)
            mask = torch.ones(tok.shape[:2], dtype=torch.bool, device=tok.device)
        else:
            tok, mask = self.bag(x)
        ones = torch.ones(len(g), 1, dtype=torch.bool, device=g.device)
        return torch.cat([g, tok], 1), torch.cat([ones, mask], 1)  # (B, 1 + T, d), (B, 1 + T)


@register_method("udsph")
class UDSPH(SSAH):
    """UDSPH (2022): SSAH + cross-modal attention preserving local correlation.

    Lu et al., 2022, designed from its abstract (module docstring).
    """

    small = {"hidden": 64, "feat_dim": 32, "att_dim": 16, "max_tokens": 4, "att_pairs": 8}

    def build(self, cfg):
        if cfg.pres_target not in ("mixed", "attention"):
            raise CmhashError(f"udsph pres_target must be mixed or attention, got {cfg.pres_target!r}")
        super().build(cfg)
        region_dim = self.img_net.encoder.region_dim
        self.img_tokens = _Tokens(cfg.feat_dim, cfg.att_dim, self.img_dim, region_dim, cfg.max_tokens)
        self.txt_tokens = _Tokens(cfg.feat_dim, cfg.att_dim, self.txt_dim, 0, cfg.max_tokens)
        self.att_scale = nn.Parameter(torch.tensor(10.0))
        self.att_bias = nn.Parameter(torch.tensor(-5.0))

    def run_net(self, modality: str, x: torch.Tensor):
        """A modality net's (hash, feature, label) and its local input: the image's conv-map cells
        (B, R, C) from the same pass (None for text or feature vectors)."""
        if modality == "image":
            enc = self.img_net.encoder
            g, regions = enc.split(x)
            return self.img_net.heads(enc.body(g)), regions
        return self.txt_net(x), None

    def tokens(self, modality: str, x: torch.Tensor, feature: torch.Tensor, regions: torch.Tensor | None):
        net = self.img_tokens if modality == "image" else self.txt_tokens
        return net(feature, x, regions)

    def modality_loss(self, phase: str, batch: dict, s: torch.Tensor):
        c = self.cfg
        img_side = phase == "image"
        out, regions = self.run_net(phase, batch[phase])  # (h, f, label)
        loss, parts = self.modality_terms(phase, out, batch, s)
        # the attention terms on the batch's first att_pairs items (its pairs cost n^2 R W d)
        n = min(c.att_pairs or len(out[0]), len(out[0]))
        other = "text" if img_side else "image"
        x_other = batch[other][:n]
        with torch.no_grad():  # the other modality is held fixed in this phase
            (o_h, o_f, _), o_regions = self.run_net(other, x_other)
            o_tok, o_mask = self.tokens(other, x_other, o_f, o_regions)
        tok, mask = self.tokens(phase, batch[phase][:n], out[1][:n], None if regions is None else regions[:n])
        if img_side:
            s_att = cross_attention_similarity(tok, o_tok, mask, o_mask, c.smooth)  # (n images, n texts)
            h_i, h_t = out[0][:n], o_h
        else:
            s_att = cross_attention_similarity(o_tok, tok, o_mask, mask, c.smooth)
            h_i, h_t = o_h, out[0][:n]
        lab = batch["label"][:n]
        s_pair = label_similarity(lab, lab)  # (n, n)
        bal = self.balanced_pairs
        l_att = attention_calibration_loss(s_att, s_pair, self.att_scale, self.att_bias)  # calibrated to the base rate
        l_pres = attention_preservation_loss(h_i, h_t, s_att, self.att_scale, self.att_bias, bal,
                                             s_pair if c.pres_target == "mixed" else None)
        parts.update(att=l_att.item(), pres=l_pres.item())
        return loss + c.w_att * l_att + c.w_pres * l_pres, parts

    def make_optimizer(self):
        c = self.cfg
        opts = super().make_optimizer()
        att = [self.att_scale, self.att_bias]
        opts["image"] = torch.optim.Adam([
            {"params": self.img_net.parameters(), "lr": c.lr_img},
            {"params": list(self.img_tokens.parameters()) + att, "lr": c.lr_img * c.att_lr_mult}])
        opts["text"] = torch.optim.Adam([
            {"params": self.txt_net.parameters(), "lr": c.lr_txt},
            {"params": list(self.txt_tokens.parameters()) + att, "lr": c.lr_txt * c.att_lr_mult}])
        return opts

