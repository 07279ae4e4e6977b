"""DSPRH: Deep Semantic-Preserving Reconstruction Hashing (Cheng, Wang, Du, Entropy 2020),
unsupervised. Our reconstruction of the paper (its equations did not survive in the text):

- Image feature space (section 3.2): ``models.fusion.FusionImageFeatures``,
  F_I = w1 f1 + w2 f2 + w3 f3 from strip pooling + iSQRT-COV, iSQRT-COV, and fc7.
- Text feature space: DJSRH's TxtNet first layer, F_T = ReLU(Linear(d, 4096)).
- Feature reconstruction layers (section 3.3): one ``models.twin_bottleneck.TwinBottleneck`` per
  modality; the image branch's code and decoder rebuild the text feature space (the text vector),
  the text branch's rebuild the image feature space (the frozen image features used for the
  similarities, as DSAH's decoders do; rebuilding the learned F_I would let both shrink to 0).
- Loss (section 3.4, Eq. 19): L = alpha L_align + beta L_ct + gamma L_p, alpha = 1, beta = 0.03,
  gamma = 1, with L_align in ``losses.dsprh_alignment`` (lambda = 0.9, nu = 0.001, u = 1),
  L_ct in ``losses.cosine_triplet`` and L_p in ``losses.pairwise``. Every term and sub-term has
  its own weight; 0 switches it off (the loss ablation of Table 4).

Settings the paper does not give (our choices, docs/methods.md and docs/dsprh.md): the optimiser
(DSAH's SGD: lr 0.005, Nesterov momentum 0.7, weight decay 5e-4; 0.001 for a fine-tuned
backbone) and the ranking term's reading (DSAH's ||diag - mu||^2), both chosen on the validation
part of UCM-captions' training set over DJSRH's optimiser and a softmax ranking
(``cmhash sweep dsprh-select``: score validation); the triplet margin (0.5 in cosine
distance) and negatives (hardest among the least similar half of the batch), and the pairwise
targets (soft: lambda cos_I + (1 - lambda) cos_T).

The ablation path from DSAH (``presets/sweeps/dsprh-path.yaml``, docs/dsprh.md) needs DSAH inside
this class, one setting at a time: ``recon: linear`` replaces the twin bottlenecks by DSAH's two
linear decoders fed sign(code) (reconstruction trains the decoders only, as DSAH's reference does;
``none`` drops reconstruction), ``align: dsah`` replaces L_align by DSAH's whole loss
(``losses.dsah`` with DSAH's own weights from its preset), and ``enc_dim: 0`` with ``w1 = w2 = 0``
makes the nets DSAH's (pooled features -> Linear(D, feat_dim) -> ReLU -> Linear(feat_dim, K)).
With those settings, beta = gamma = 0 and DSAH's optimiser (``nesterov``), the loss is DSAH's
(tests/methods/test_dsprh.py checks it value for value).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..codes import sign
from ..losses import (alignment_loss, bidirectional_cosine_triplet, dsah_loss, dsah_similarity,
                      pairwise_likelihood_loss, pairwise_targets)
from ..losses.diagonal_ranking import RANK_FORMS
from ..models import FusionImageFeatures, TwinBottleneck
from ..utils import CmhashError
from .base import METHODS, HashMethod, register_method

RECON = ("twin", "linear", "none")
ALIGN = ("dsprh", "dsah")


@register_method("dsprh", distributed=True)
class DSPRH(HashMethod):
    """DSPRH (Entropy 2020): fusion image net, twin bottlenecks, alignment + cosine triplet + pairwise.

    Cheng, Wang and Du, Entropy 2020 (module docstring). The batch targets are gathered across
    processes; BatchNorm layers of the conv-map branch see per-rank batches.
    """

    canonical_targets = True

    small = {"feat_dim": 32, "txt_hidden": 32, "enc_dim": 32, "cont_dim": 16, "dec_dim": 32}

    @classmethod
    def uses_feature_map(cls, config) -> bool:
        return config.w1 > 0 or config.w2 > 0

    def build(self, cfg):
        img_dim, txt_dim, map_channels, backbone = self.img_dim, self.txt_dim, self.map_channels, self.image_backbone()
        if cfg.w1 < 0 or cfg.w2 < 0 or cfg.w3 < 0 or cfg.w1 + cfg.w2 + cfg.w3 <= 0:
            raise CmhashError(f"dsprh fusion weights must be >= 0 and not all 0, got {cfg.w1}/{cfg.w2}/{cfg.w3}")
        if cfg.negatives not in ("hard", "random", "least"):
            raise CmhashError(f"dsprh negatives must be hard, random or least, got {cfg.negatives!r}")
        if cfg.pair_target not in ("soft", "binary"):
            raise CmhashError(f"dsprh pair_target must be soft or binary, got {cfg.pair_target!r}")
        if cfg.recon not in RECON:
            raise CmhashError(f"dsprh recon must be one of {', '.join(RECON)}, got {cfg.recon!r}")
        if cfg.align not in ALIGN:
            raise CmhashError(f"dsprh align must be one of {', '.join(ALIGN)}, got {cfg.align!r}")
        if cfg.rank_form not in RANK_FORMS:
            raise CmhashError(f"dsprh rank_form must be one of {', '.join(RANK_FORMS)}, got {cfg.rank_form!r}")
        self.img_feat = FusionImageFeatures(img_dim, map_channels, cfg.feat_dim, (cfg.w1, cfg.w2, cfg.w3),
                                            cfg.map_dim, cfg.cov_dim, cfg.cov_iters, cfg.strip, cfg.img_dropout,
                                            backbone)
        self.txt_feat = nn.Sequential(nn.Linear(txt_dim, cfg.txt_hidden), nn.ReLU(inplace=True))
        # the frozen image features the text branch rebuilds: the backbone's pooled features
        target_img = self.spec.image.dim
        tb = dict(enc_dim=cfg.enc_dim, cont_dim=cfg.cont_dim, dec_dim=cfg.dec_dim, graph=cfg.graph,
                  power=cfg.adj_power, reconstruct=cfg.recon == "twin")
        self.img_tb = TwinBottleneck(self.img_feat.out_dim, self.bits, txt_dim, **tb)  # image -> text space
        self.txt_tb = TwinBottleneck(cfg.txt_hidden, self.bits, target_img, **tb)  # text -> image space
        if cfg.recon == "linear":  # DSAH's decoders
            self.dec_img = nn.Linear(self.bits, txt_dim)  # image code -> text vector
            self.dec_txt = nn.Linear(self.bits, target_img)  # text code -> image feature F_I
        # DSAH's loss weights, from DSAH's own preset (the one place they are decided)
        self._dsah = METHODS.get("dsah").make_config({}) if cfg.align == "dsah" else None
        self._gen = torch.Generator().manual_seed(0)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:  # (B, K)
        return self.img_tb.code(self.img_feat(x))

    def encode_text(self, t: torch.Tensor) -> torch.Tensor:  # (B, K)
        return self.txt_tb.code(self.txt_feat(t))

    def codes_and_reconstructions(self, batch):
        """Relaxed codes (B, K) of both modalities and, when reconstruction is on, each code's
        rebuild of the other modality's features ((B, d), (B, D)), else None."""
        c = self.cfg
        f_i, f_t = self.img_feat(batch["image"]), self.txt_feat(batch["text"])  # (B, D_I), (B, 4096)
        if c.recon == "twin" and c.alpha > 0 and c.w_rec > 0:
            code_i, rec_i = self.img_tb(f_i)  # (B, K), (B, d)
            code_t, rec_t = self.txt_tb(f_t)  # (B, K), (B, D)
            return code_i, code_t, rec_i, rec_t
        code_i, code_t = self.img_tb.code(f_i), self.txt_tb.code(f_t)
        if c.recon == "linear" and c.alpha > 0 and c.w_rec > 0:  # DSAH: sign(code) in, no gradient to the codes
            return code_i, code_t, self.dec_img(sign(code_i).detach()), self.dec_txt(sign(code_t).detach())
        return code_i, code_t, None, None

    def loss(self, batch):
        c = self.cfg
        code_i, code_t, rec_i, rec_t = self.codes_and_reconstructions(batch)
        need_rec = rec_i is not None
        # every rank's rows (the global batch) for the batch-level targets; identity in one process
        if need_rec:
            code_i, code_t, rec_i, rec_t, feat, text, t_feat, t_text = self.gather(
                code_i, code_t, rec_i, rec_t, batch["feat"], batch["text"], *self.target_inputs(batch))
        else:
            code_i, code_t, feat, text, t_feat, t_text = self.gather(code_i, code_t, batch["feat"], batch["text"],
                                                                     *self.target_inputs(batch))
        batch = dict(batch, feat=feat, text=text)
        with torch.no_grad():
            s, s_i, s_t = dsah_similarity(t_feat, t_text, c.mu, c.lam)  # (B, B) each
            s_fused = s / c.mu  # lambda S_I + (1 - lambda) S_T, in [-1, 1]
        parts = {}
        total = code_i.new_zeros(())
        if c.alpha > 0 and self._dsah is not None:  # DSAH's whole loss in place of L_align
            d = self._dsah
            if rec_i is None:
                raise CmhashError("dsprh align: dsah needs reconstruction (recon: twin or linear, w_rec > 0)")
            l_align, p = dsah_loss(code_i, code_t, s, s_i, s_t, rec_i, batch["text"], rec_t, batch["feat"], c.mu,
                                   d.w_diag, c.w_rec * d.w_recon, d.w_sym, d.w_intra)
            total = total + c.alpha * l_align
            parts.update(p, dsah=l_align.item())
        elif c.alpha > 0:
            l_align, p = alignment_loss(code_i, code_t, s, s_i, s_t, rec_i, batch["text"], rec_t, batch["feat"], c.mu,
                                        c.w_rec if need_rec else 0.0, c.w_intra, c.w_inter, c.w_rank, c.nu, c.u,
                                        c.rank_form, c.rank_margin, c.rank_tau)
            total = total + c.alpha * l_align
            parts.update(p, align=l_align.item())
        if c.beta > 0:
            l_ct, p = bidirectional_cosine_triplet(code_i, code_t, s_fused, c.margin, c.negatives, c.neg_quantile,
                                                   self._gen)
            total = total + c.beta * l_ct
            parts.update(p, triplet=l_ct.item())
        if c.gamma > 0:
            l_p = pairwise_likelihood_loss(code_i, code_t, pairwise_targets(s_fused, c.pair_target, c.pair_quantile))
            total = total + c.gamma * l_p
            parts["pairwise"] = l_p.item()
        return total, parts

    def make_optimizer(self):
        c = self.cfg
        bb = self.img_feat.backbone
        bb_params = {id(p) for p in bb.parameters()} if bb is not None else set()
        groups = [{"params": [p for p in self.parameters() if id(p) not in bb_params], "lr": c.lr}]
        if bb is not None:
            groups.append({"params": list(bb.parameters()), "lr": c.lr_backbone})
        # fused: one pass over each parameter, its gradient and its momentum (the same update as the
        # multi-pass foreach path; measured 2-3x faster on 2 CPU cores for DSPRH's 13-17M parameters)
        return torch.optim.SGD(groups, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay,
                               fused=True)
