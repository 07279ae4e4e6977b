"""JDSH: Joint-modal Distribution-based Similarity Hashing (Liu, Qian, Guan, Zhan, Ying, SIGIR 2020),
unsupervised; DJSRH's successor.

As the authors' code does: the image net is one hash layer on frozen image features (their
``ImgNet`` runs AlexNet up to fc7 under ``no_grad`` and trains ``hash_layer`` only, so
``img_hidden`` is 0 here), the text net d -> 4096 -> K, both with DJSRH's scaled tanh
(alpha = sqrt(epoch + 1)); the joint-modal similarity with distribution-based decision and
weighting and the loss of ``losses.jdsh``; SGD (momentum 0.9, weight decay 5e-4), lr 0.01 for
both nets, batch 32 with drop_last, 300 epochs on MIRFlickr (``config/JDSH_MIRFlickr.json``).

Where we depart: the DSDW thresholds. The code hard-codes numbers fitted on MIRFlickr; we fit
them on each batch (``losses.jdsh.dsdw_stats``, ``dsdw: batch``, the default); ``dsdw: fixed``
uses ``dsdw_loc`` etc., which default to the code's MIRFlickr numbers (the MIRFlickr preset
sets ``fixed``).
"""
from __future__ import annotations

import torch

from ..losses import jdsh_loss, jdsh_similarity
from ..models import ImgNet, TxtNet
from ..utils import CmhashError
from .base import HashMethod, register_method


@register_method("jdsh", distributed=True)
class JDSH(HashMethod):
    """JDSH (SIGIR 2020): unsupervised, joint-modal similarity with distribution-based weighting.

    Liu et al., SIGIR 2020; the authors' code is followed (module docstring).
    """

    canonical_targets = True

    small = {"txt_hidden": 32}

    def build(self, cfg):
        self.img_net = ImgNet(self.img_dim, self.bits, cfg.img_hidden, 0.0, self.image_backbone())
        self.txt_net = TxtNet(self.txt_dim, self.bits, cfg.txt_hidden)

    def dsdw_stats(self) -> dict | None:
        """The DSDW numbers: None (fitted on each batch) for ``dsdw: batch``, the preset's for ``fixed``."""
        c = self.cfg
        if c.dsdw not in ("batch", "fixed"):
            raise CmhashError(f"jdsh dsdw must be 'batch' or 'fixed', got {c.dsdw!r}")
        if c.dsdw == "batch":
            return None
        return {"loc": c.dsdw_loc, "scale_left": c.dsdw_scale_left, "scale_right": c.dsdw_scale_right,
                "s_min": c.dsdw_min, "s_max": c.dsdw_max}

    def similarity(self, batch: dict) -> torch.Tensor:
        c = self.cfg
        return jdsh_similarity(batch["feat"], batch["text"], c.alpha, c.beta, c.lamb, c.mu, c.a, c.b, c.l1, c.l2,
                               self.dsdw_stats())

    def loss(self, batch):
        code_i, code_t = self.img_net(batch["image"]), self.txt_net(batch["text"])  # (b, K) this rank's rows
        code_i, code_t, feat, text = self.gather(code_i, code_t, *self.target_inputs(batch))  # (B, .)
        with torch.no_grad():
            s = self.similarity({"feat": feat, "text": text})  # (B, B)
        return jdsh_loss(code_i, code_t, s, self.cfg.intra)

    def make_optimizer(self):
        c = self.cfg
        return torch.optim.SGD([{"params": self.img_net.parameters(), "lr": c.lr_img},
                                {"params": self.txt_net.parameters(), "lr": c.lr_txt}],
                               lr=c.lr_txt, momentum=c.momentum, weight_decay=c.weight_decay)
